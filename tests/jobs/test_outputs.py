"""Outputs: the agent uploads with tus and its host credential (docs/data.md, "Outputs"); only
the owner lists and downloads."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tokens import secret_issue
from blobs.models import Blob, BlobHolding
from hosts.models import HostCredential
from jobs.models import JobOutput
from tests.blobs.conftest import Tus, stored_names
from tests.jobs.helpers import finished, say, submit

CONTENT = b"result,42\n"
SHA = hashlib.sha256(CONTENT).hexdigest()


def credential_for(host) -> str:
    issued = secret_issue("cph")
    HostCredential.objects.create(host=host, prefix=issued.prefix, digest=issued.digest)
    return issued.plaintext


@pytest.fixture
def ran(alice, make_host, hana, ledger, committed):
    ledger.fund(alice, 5_000_000)
    host = make_host(hana, "a")
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
        say(
            host,
            "job.finished",
            **finished(
                job, 1, outputs=[{"name": "out/result.csv", "size": len(CONTENT), "sha256": SHA}]
            ),
        )
    return job, host


AGENT_UPLOADS = "/api/v1/agent/uploads/"


def agent_tus(api, secret) -> Tus:
    return Tus(api, AGENT_UPLOADS, **({"Authorization": f"Bearer {secret}"} if secret else {}))


def upload(api, job, secret, *, attempt=1, name="out/result.csv", content=CONTENT, sha256=None):
    """The agent's whole tus upload: the creation, then one PATCH unless it answered complete.
    Returns the refusal, or the last answer (201 complete at once, or the PATCH's 204)."""
    tus = agent_tus(api, secret)
    created = tus.create(
        len(content),
        job_id=str(job.pk),
        attempt=str(attempt),
        name=name,
        sha256=sha256 or hashlib.sha256(content).hexdigest(),
    )
    if created.status_code != 201 or created["Upload-Offset"] == str(len(content)):
        return created
    return tus.patch(created["Location"], 0, content)


def ok(response) -> bool:
    return response.status_code in (201, 204)


def test_the_agent_uploads_a_declared_output_and_the_owner_downloads_it(
    ran, api, client_for, alice
):
    # given
    job, host = ran

    # when
    response = upload(api, job, credential_for(host))

    # then
    assert response.status_code == 204, response.content
    output = JobOutput.objects.get()
    assert output.blob is not None
    assert (output.blob.sha256, output.uploaded_at is not None) == (SHA, True)
    holding = BlobHolding.objects.get()
    assert (holding.user, holding.origin, holding.name) == (alice, "output", "out/result.csv")
    owner = client_for(alice)
    listing = owner.get(f"/api/v1/jobs/{job.pk}/outputs/")
    assert [(o["name"], o["size"], o["sha256"], o["attempt"]) for o in listing.data["results"]] == [
        ("out/result.csv", len(CONTENT), SHA, 1)
    ]
    download = owner.get(f"/api/v1/jobs/{job.pk}/outputs/out/result.csv")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == CONTENT
    assert download["Content-Disposition"] == 'attachment; filename="result.csv"'


def test_a_repeated_upload_answers_complete_at_once(ran, api):
    job, host = ran
    secret = credential_for(host)
    first, second = upload(api, job, secret), upload(api, job, secret)
    assert (first.status_code, second.status_code) == (204, 201)
    assert second.json()["status"] == "complete"
    assert (JobOutput.objects.count(), Blob.objects.count(), BlobHolding.objects.count()) == (
        1,
        1,
        1,
    )


def test_an_owner_who_holds_the_bytes_gets_the_output_without_them_being_sent(
    ran, api, alice, client_for
):
    # given alice uploaded the same bytes herself
    job, host = ran
    assert Tus(client_for(alice)).upload(CONTENT).status_code == 204

    # when
    response = upload(api, job, credential_for(host))

    # then
    assert (response.status_code, response.json()["status"]) == (201, "complete")
    assert JobOutput.objects.get().blob == Blob.objects.get()


def test_a_host_naming_another_users_digest_must_send_the_bytes(ran, api, mallory, client_for):
    # given mallory holds bytes with this digest; alice (the job's owner) does not
    job, host = ran
    assert Tus(client_for(mallory)).upload(CONTENT).status_code == 204
    tus = agent_tus(api, credential_for(host))

    # when the host claims the output by digest alone
    created = tus.create(
        len(CONTENT), job_id=str(job.pk), attempt="1", name="out/result.csv", sha256=SHA
    )
    wrong = tus.patch(created["Location"], 0, b"x" * len(CONTENT))

    # then the creation wants the bytes and other bytes fail
    assert (created.status_code, created["Upload-Offset"]) == (201, "0")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (400, "digest_mismatch")
    assert JobOutput.objects.get().blob is None
    assert list(BlobHolding.objects.values_list("user__username", flat=True)) == ["mallory"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"tampered\n"}, 400, "output_mismatch"),
        ({"content": b"tampered\n", "sha256": SHA}, 400, "output_mismatch"),  # size differs
        ({"sha256": "F" * 64}, 400, "invalid"),
        ({"name": "../../etc/passwd"}, 400, "invalid_path"),
        ({"attempt": 2}, 404, "not_found"),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(ran, api, kwargs, status, code):
    job, host = ran
    response = upload(api, job, credential_for(host), **kwargs)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0
    assert (Blob.objects.count(), BlobHolding.objects.count(), stored_names()) == (0, 0, [])


def test_an_output_over_the_cap_is_413(ran, api, settings):
    settings.JOB_OUTPUT_MAX_BYTES = 5
    job, host = ran
    response = upload(api, job, credential_for(host))
    assert (response.status_code, response.json()["error"]["code"]) == (413, "too_large")
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0


def test_another_host_cannot_upload_for_this_attempt(ran, api, make_host, hana):
    # given
    job, _ = ran
    other = make_host(hana, "b")

    # when
    response = upload(api, job, credential_for(other))

    # then
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0


@pytest.mark.parametrize("secret", [None, "cph_not-a-real-credential-at-all-000000000000000"])
def test_uploads_need_a_valid_host_credential(ran, api, secret):
    job, _ = ran
    response = upload(api, job, secret)
    assert response.status_code == 401
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0


def test_a_revoked_credential_is_refused(ran, api):
    job, host = ran
    secret = credential_for(host)
    HostCredential.objects.update(revoked_at="2026-01-01T00:00:00Z")
    assert upload(api, job, secret).status_code == 401


def test_a_person_token_cannot_upload(ran, client_for, alice):
    job, _ = ran
    response = Tus(client_for(alice), AGENT_UPLOADS).create(
        1, job_id=str(job.pk), attempt="1", name="x", sha256=SHA
    )
    assert response.status_code == 403
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0


def test_an_undeclared_output_is_refused_and_stores_nothing(ran, api):
    # given job.finished declared only out/result.csv
    job, host = ran

    # when the host uploads another file
    response = upload(api, job, credential_for(host), name="out/extra.csv")

    # then
    assert (response.status_code, response.json()["error"]["code"]) == (400, "undeclared_output")
    assert response.json()["error"]["fields"] == {"name": ["Not declared in job.finished."]}
    assert list(JobOutput.objects.values_list("name", "uploaded_at")) == [("out/result.csv", None)]


def test_a_live_upload_that_job_finished_does_not_declare_is_discarded(
    alice, make_host, hana, ledger, committed, api
):
    # given a running attempt uploads two files (the agent uploads, then sends job.finished)
    ledger.fund(alice, 5_000_000)
    host = make_host(hana, "live")
    secret = credential_for(host)
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
    kept = upload(api, job, secret)
    extra = upload(api, job, secret, name="out/extra.csv", content=b"smuggled")
    smuggled = JobOutput.objects.get(name="out/extra.csv").blob
    assert smuggled is not None

    # when job.finished declares only the first
    with committed():
        say(
            host,
            "job.finished",
            **finished(
                job, 1, outputs=[{"name": "out/result.csv", "size": len(CONTENT), "sha256": SHA}]
            ),
        )
    late_extra = upload(api, job, secret, name="out/extra.csv", content=b"smuggled")

    # then the renter sees only the declared one; the other file is gone
    assert (kept.status_code, extra.status_code) == (204, 204)
    assert (late_extra.status_code, late_extra.json()["error"]["code"]) == (
        400,
        "undeclared_output",
    )
    assert list(JobOutput.objects.values_list("name", flat=True)) == ["out/result.csv"]
    # alice no longer holds the smuggled bytes: the collector deletes them
    assert list(BlobHolding.objects.values_list("blob__sha256", flat=True)) == [SHA]
    assert Blob.objects.get(pk=smuggled.pk).orphaned_at is not None


def test_a_live_upload_declared_with_other_content_is_replaced_by_the_declaration(
    alice, make_host, hana, ledger, committed, api
):
    ledger.fund(alice, 5_000_000)
    host = make_host(hana, "live")
    secret = credential_for(host)
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
    assert upload(api, job, secret, content=b"something else").status_code == 204

    with committed():
        say(
            host,
            "job.finished",
            **finished(
                job, 1, outputs=[{"name": "out/result.csv", "size": len(CONTENT), "sha256": SHA}]
            ),
        )

    output = JobOutput.objects.get()
    assert (output.size, output.sha256, output.uploaded_at) == (len(CONTENT), SHA, None)
    assert upload(api, job, secret).status_code == 204


def test_a_late_upload_is_refused_and_stores_nothing(ran, api, settings):
    # given the attempt finished just over JOB_LATE_UPLOAD_SECONDS ago
    settings.JOB_LATE_UPLOAD_SECONDS = 60
    job, host = ran
    attempt = job.attempts.get(number=1)
    attempt.finished_at = timezone.now() - timedelta(seconds=61)
    attempt.save(update_fields=["finished_at"])

    # when
    response = upload(api, job, credential_for(host))

    # then
    assert (response.status_code, response.json()["error"]["code"]) == (409, "upload_window_closed")
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0
    assert stored_names() == []


def test_an_upload_inside_the_window_is_taken(ran, api, settings):
    settings.JOB_LATE_UPLOAD_SECONDS = 60
    job, host = ran
    attempt = job.attempts.get(number=1)
    attempt.finished_at = timezone.now() - timedelta(seconds=50)
    attempt.save(update_fields=["finished_at"])

    response = upload(api, job, credential_for(host))

    assert response.status_code == 204
    assert JobOutput.objects.get().uploaded_at is not None


def test_another_host_cannot_continue_an_upload(ran, api, make_host, hana):
    # given hana's first host started an upload
    job, host = ran
    tus = agent_tus(api, credential_for(host))
    created = tus.create(
        len(CONTENT), job_id=str(job.pk), attempt="1", name="out/result.csv", sha256=SHA
    )
    other = agent_tus(api, credential_for(make_host(hana, "b")))

    # when / then
    assert other.head(created["Location"]).status_code == 404
    assert other.patch(created["Location"], 0, CONTENT).status_code == 404
    assert other.delete(created["Location"]).status_code == 404
    assert JobOutput.objects.get().blob is None
    assert stored_names() == []


def test_the_window_closing_mid_upload_refuses_the_rest(ran, api, settings):
    # given an upload half sent inside the window
    settings.JOB_LATE_UPLOAD_SECONDS = 60
    job, host = ran
    tus = agent_tus(api, credential_for(host))
    created = tus.create(
        len(CONTENT), job_id=str(job.pk), attempt="1", name="out/result.csv", sha256=SHA
    )
    assert tus.patch(created["Location"], 0, CONTENT[:4]).status_code == 204

    # when the window closes
    job.attempts.update(finished_at=timezone.now() - timedelta(seconds=61))
    rest = tus.patch(created["Location"], 4, CONTENT[4:])

    # then
    assert (rest.status_code, rest.json()["error"]["code"]) == (409, "upload_window_closed")
    assert (JobOutput.objects.get().blob, Blob.objects.count()) == (None, 0)


def test_the_owner_downloads_an_output_with_range(ran, api, alice, client_for, mallory):
    job, host = ran
    assert upload(api, job, credential_for(host)).status_code == 204
    part = client_for(alice).get(
        f"/api/v1/jobs/{job.pk}/outputs/out/result.csv", headers={"Range": "bytes=0-5"}
    )
    assert (part.status_code, b"".join(part.streaming_content)) == (206, CONTENT[:6])
    assert part["Content-Range"] == f"bytes 0-5/{len(CONTENT)}"
    assert (
        client_for(mallory).get(f"/api/v1/jobs/{job.pk}/outputs/out/result.csv").status_code == 404
    )


def test_the_old_multipart_endpoint_is_gone(ran, api):
    job, host = ran
    response = api.post(
        f"/api/v1/agent/jobs/{job.pk}/attempts/1/outputs/",
        {"name": "out/result.csv"},
        headers={"Authorization": f"Bearer {credential_for(host)}"},
    )
    assert response.status_code == 404
