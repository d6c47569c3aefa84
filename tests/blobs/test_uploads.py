"""tus uploads of the renters (docs/data.md, "Uploads"), on both stores."""

from __future__ import annotations

import pytest
from django.core.files.storage import storages

from blobs.models import Blob, BlobHolding, Upload, UploadStatus, blob_storage_name
from tests.blobs.conftest import TUS, Tus, b64, sha, stored_names

DATA = bytes(range(256)) * 40  # 10 KiB
DIGEST = sha(DATA)


def error(response) -> tuple[int, str, list[str]]:
    body = response.json()["error"]
    return response.status_code, body["code"], sorted(body["fields"])


def test_options_describes_the_server(api, alice, client_for):
    response = client_for(alice).options("/api/v1/uploads/")
    assert response.status_code == 204
    assert (response["Tus-Resumable"], response["Tus-Version"], response["Tus-Extension"]) == (
        "1.0.0",
        "1.0.0",
        "creation,termination,expiration",
    )
    assert response["Tus-Max-Size"] == str(5 * 1024**3)


def test_an_upload_in_parts_becomes_a_held_blob(
    store, alice, tus_for, django_capture_on_commit_callbacks
):
    # given
    tus = tus_for(alice)
    created = tus.create(len(DATA), sha256=DIGEST, filename="data.bin")
    assert created.status_code == 201, created.content
    location = created["Location"]
    assert created["Upload-Offset"] == "0"
    assert created["Upload-Expires"].endswith(" GMT")
    assert created.json()["status"] == "receiving"

    # when
    first = tus.patch(location, 0, DATA[:4000])
    assert (first.status_code, first["Upload-Offset"]) == (204, "4000")
    assert Blob.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        last = tus.patch(location, 4000, DATA[4000:])

    # then
    assert (last.status_code, last["Upload-Offset"]) == (204, str(len(DATA)))
    blob = Blob.objects.get()
    assert (blob.sha256, blob.size) == (DIGEST, len(DATA))
    holding = BlobHolding.objects.get()
    assert (holding.user, holding.origin, holding.name) == (alice, "upload", "data.bin")
    assert Upload.objects.get().status == UploadStatus.COMPLETE
    assert stored_names() == [blob_storage_name(DIGEST)]  # the parts are gone
    with storages["blobs"].open(blob_storage_name(DIGEST), "rb") as handle:
        assert handle.read() == DATA
    head = tus.head(location)
    assert (head.status_code, head["Upload-Offset"], head["Upload-Length"]) == (
        200,
        str(len(DATA)),
        str(len(DATA)),
    )
    assert head["Cache-Control"] == "no-store"


def test_the_same_bytes_again_answer_complete_at_once(store, alice, tus_for):
    tus = tus_for(alice)
    assert tus.upload(DATA).status_code == 204
    again = tus.create(len(DATA), sha256=DIGEST)
    assert (again.status_code, again["Upload-Offset"], again.json()["status"]) == (
        201,
        str(len(DATA)),
        "complete",
    )
    assert (Blob.objects.count(), BlobHolding.objects.count()) == (1, 1)


def test_two_users_hold_one_stored_object_and_the_second_sends_the_bytes(
    store, alice, bob, tus_for, django_capture_on_commit_callbacks
):
    # given
    with django_capture_on_commit_callbacks(execute=True):
        assert tus_for(alice).upload(DATA).status_code == 204

    # when: bob knowing the digest is not enough: he must send the bytes
    created = tus_for(bob).create(len(DATA), sha256=DIGEST)
    assert (created.status_code, created["Upload-Offset"]) == (201, "0")
    with django_capture_on_commit_callbacks(execute=True):
        done = tus_for(bob).patch(created["Location"], 0, DATA)

    # then
    assert done.status_code == 204
    assert Blob.objects.count() == 1
    assert sorted(h.user.username for h in BlobHolding.objects.all()) == ["alice", "bob"]
    assert stored_names() == [blob_storage_name(DIGEST)]


def test_a_blob_row_left_without_its_object_gets_the_bytes_back_from_the_next_upload(
    store, alice, bob, tus_for, django_capture_on_commit_callbacks
):
    # given: a collector killed after deleting the object, before its commit: the row stays
    with django_capture_on_commit_callbacks(execute=True):
        assert tus_for(alice).upload(DATA).status_code == 204
    BlobHolding.objects.all().delete()
    storages["blobs"].delete(blob_storage_name(DIGEST))

    # when: bob uploads those bytes
    with django_capture_on_commit_callbacks(execute=True):
        done = tus_for(bob).upload(DATA)

    # then: the object is written again, and what bob holds can be read
    assert done.status_code == 204
    assert Blob.objects.count() == 1
    assert stored_names() == [blob_storage_name(DIGEST)]
    with storages["blobs"].open(blob_storage_name(DIGEST)) as handle:
        assert handle.read() == DATA


def test_bytes_that_do_not_match_fail_and_keep_nothing(
    store, alice, bob, tus_for, django_capture_on_commit_callbacks
):
    # given: bob holds the real bytes; alice claims the digest with other bytes
    with django_capture_on_commit_callbacks(execute=True):
        assert tus_for(bob).upload(DATA).status_code == 204
    tus = tus_for(alice)
    created = tus.create(len(DATA), sha256=DIGEST)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        answer = tus.patch(created["Location"], 0, b"x" * len(DATA))

    # then
    assert error(answer) == (400, "digest_mismatch", ["sha256"])
    assert Upload.objects.get(pk=created.json()["id"]).status == UploadStatus.FAILED
    assert list(BlobHolding.objects.values_list("user__username", flat=True)) == ["bob"]
    assert stored_names() == [blob_storage_name(DIGEST)]  # bob's object untouched
    with storages["blobs"].open(blob_storage_name(DIGEST), "rb") as handle:
        assert handle.read() == DATA


def test_a_new_digest_that_does_not_match_deletes_its_half_written_object(
    store, alice, tus_for, django_capture_on_commit_callbacks
):
    tus = tus_for(alice)
    created = tus.create(len(DATA), sha256=DIGEST)
    with django_capture_on_commit_callbacks(execute=True):
        answer = tus.patch(created["Location"], 0, b"y" * len(DATA))
    assert error(answer)[:2] == (400, "digest_mismatch")
    assert (Blob.objects.count(), BlobHolding.objects.count(), stored_names()) == (0, 0, [])


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"Upload-Length": "10", "Upload-Metadata": f"sha256 {b64('ABC')}"},
            (400, "invalid", ["sha256"]),
        ),
        (
            {"Upload-Length": "10", "Upload-Metadata": f"sha256 {b64(DIGEST.upper())}"},
            (400, "invalid", ["sha256"]),
        ),
        (
            {"Upload-Length": "-1", "Upload-Metadata": f"sha256 {b64(DIGEST)}"},
            (400, "invalid", ["Upload-Length"]),
        ),
        (
            {"Upload-Length": "ten", "Upload-Metadata": f"sha256 {b64(DIGEST)}"},
            (400, "invalid", ["Upload-Length"]),
        ),
        (
            {"Upload-Length": "10", "Upload-Metadata": "sha256 %%%"},
            (400, "invalid", ["Upload-Metadata"]),
        ),
        ({"Upload-Length": "10"}, (400, "invalid", ["Upload-Metadata"])),
        (
            {"Upload-Length": str(5 * 1024**3 + 1), "Upload-Metadata": f"sha256 {b64(DIGEST)}"},
            (413, "too_large", ["Upload-Length"]),
        ),
    ],
)
def test_bad_creations_are_refused_and_create_nothing(alice, client_for, headers, expected):
    response = client_for(alice).post("/api/v1/uploads/", headers={**TUS, **headers})
    assert error(response) == expected
    assert Upload.objects.count() == 0


def test_a_creation_without_tus_resumable_is_412(alice, client_for):
    response = client_for(alice).post(
        "/api/v1/uploads/",
        headers={"Upload-Length": "10", "Upload-Metadata": f"sha256 {b64(DIGEST)}"},
    )
    assert error(response) == (412, "tus_version", ["Tus-Resumable"])
    assert Upload.objects.count() == 0


def test_the_quota_counts_what_is_held_and_what_is_being_sent(alice, tus_for, settings):
    # given: 10 KiB held, 3000 bytes being sent, a quota of 15000
    settings.BLOB_QUOTA_BYTES = 15_000
    tus = tus_for(alice)
    assert tus.upload(DATA).status_code == 204
    assert tus.create(3000, sha256=sha(b"a" * 3000)).status_code == 201

    # when
    refused = tus.create(2000, sha256=sha(b"b" * 2000))

    # then
    assert error(refused) == (413, "quota_exceeded", ["Upload-Length"])
    assert "13240 of 15000 bytes" in refused.json()["error"]["message"]
    assert Upload.objects.count() == 2
    assert tus.create(1760, sha256=sha(b"c" * 1760)).status_code == 201


def test_patch_refusals_store_nothing(store, alice, tus_for, settings):
    # given
    settings.BLOB_UPLOAD_CHUNK_MAX_BYTES = 4096
    tus = tus_for(alice)
    location = tus.create(len(DATA), sha256=DIGEST)["Location"]
    assert tus.patch(location, 0, DATA[:1000]).status_code == 204

    # when / then
    assert error(tus.patch(location, 0, DATA[:1000])) == (409, "offset_mismatch", ["Upload-Offset"])
    assert error(tus.patch(location, 2000, DATA[2000:3000])) == (
        409,
        "offset_mismatch",
        ["Upload-Offset"],
    )
    assert error(tus.patch(location, 1000, DATA[1000:6000])) == (
        413,
        "chunk_too_large",
        ["Content-Length"],
    )
    no_type = tus.client.generic(
        "PATCH",
        location,
        data=DATA[1000:2000],
        content_type="application/json",
        headers={**TUS, "Upload-Offset": "1000"},
    )
    assert error(no_type) == (400, "invalid", ["Content-Type"])
    upload = Upload.objects.get()
    assert (upload.offset, upload.parts, upload.status) == (1000, 1, UploadStatus.RECEIVING)
    assert stored_names() == [upload.part_name(0)]


def test_a_patch_past_the_length_is_refused(alice, tus_for):
    tus = tus_for(alice)
    location = tus.create(100, sha256=sha(b"z" * 100))["Location"]
    assert error(tus.patch(location, 0, b"z" * 101)) == (400, "invalid", ["Content-Length"])
    assert Upload.objects.get().offset == 0


class _ShortBody:
    """A request body that ends before its Content-Length (a connection cut mid-PATCH)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int = -1) -> bytes:
        taken, self.data = self.data[:size], self.data[size:]
        return taken


def test_a_patch_cut_mid_body_stores_nothing_and_the_client_resumes(
    store, alice, tus_for, django_capture_on_commit_callbacks
):
    from blobs.services.uploads import upload_locked, upload_receive
    from config.errors import ValidationFailed

    # given: one part stored, then a PATCH whose body stops after 500 of 3000 bytes
    tus = tus_for(alice)
    location = tus.create(len(DATA), sha256=DIGEST)["Location"]
    assert tus.patch(location, 0, DATA[:2000]).status_code == 204
    upload = upload_locked(Upload.objects.get().pk, user_id=alice.pk, scope=None)
    with pytest.raises(ValidationFailed) as refused:
        upload_receive(upload, offset=2000, body=_ShortBody(DATA[2000:2500]), length=3000)
    assert refused.value.code == "incomplete_body"
    assert stored_names() == [Upload.objects.get().part_name(0)]

    # when: the client asks where to resume and sends the rest
    offset = int(tus.head(location)["Upload-Offset"])
    with django_capture_on_commit_callbacks(execute=True):
        done = tus.patch(location, offset, DATA[offset:])

    # then
    assert (offset, done.status_code) == (2000, 204)
    assert Blob.objects.get().sha256 == DIGEST


def test_other_users_get_404_for_an_upload(store, alice, mallory, tus_for):
    # given
    location = tus_for(alice).create(len(DATA), sha256=DIGEST)["Location"]
    intruder = tus_for(mallory)

    # when / then
    assert intruder.head(location).status_code == 404
    assert error(intruder.patch(location, 0, DATA))[:2] == (404, "not_found")
    assert error(intruder.delete(location))[:2] == (404, "not_found")
    upload = Upload.objects.get()
    assert (upload.offset, upload.status, stored_names()) == (0, UploadStatus.RECEIVING, [])


def test_termination_aborts_and_deletes_the_parts(
    store, alice, tus_for, django_capture_on_commit_callbacks
):
    tus = tus_for(alice)
    location = tus.create(len(DATA), sha256=DIGEST)["Location"]
    assert tus.patch(location, 0, DATA[:1000]).status_code == 204
    with django_capture_on_commit_callbacks(execute=True):
        assert tus.delete(location).status_code == 204
    assert Upload.objects.get().status == UploadStatus.ABORTED
    assert stored_names() == []
    assert error(tus.patch(location, 1000, DATA[1000:2000]))[:2] == (409, "upload_closed")


def test_an_expired_upload_takes_no_more_bytes(alice, tus_for):
    from datetime import timedelta

    from django.utils import timezone

    tus = tus_for(alice)
    location = tus.create(len(DATA), sha256=DIGEST)["Location"]
    Upload.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert error(tus.patch(location, 0, DATA[:100]))[:2] == (409, "upload_expired")
    assert Upload.objects.get().offset == 0


def test_an_anonymous_client_cannot_upload(api, db):
    response = Tus(api).create(10, sha256=sha(b"0123456789"))
    assert response.status_code in (401, 403)
    assert Upload.objects.count() == 0
