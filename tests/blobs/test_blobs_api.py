"""The renters' blobs API and the agents' token fetch (docs/data.md, "Access")."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.core import signing
from django.utils import timezone

from blobs import providers as blob_providers
from blobs.models import Blob, BlobHolding
from blobs.services import blob_fetch_url
from blobs.tokens import blob_token
from tests.blobs.conftest import sha, stored_names

DATA = bytes(range(256)) * 8  # 2 KiB
DIGEST = sha(DATA)


@pytest.fixture
def held(store, alice, tus_for, django_capture_on_commit_callbacks) -> Blob:
    with django_capture_on_commit_callbacks(execute=True):
        assert tus_for(alice).upload(DATA, filename="table.csv").status_code == 204
    return Blob.objects.get()


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_the_list_and_the_quota(held, alice, client_for, settings):
    settings.BLOB_QUOTA_BYTES = 10_000
    owner = client_for(alice)
    listing = owner.get("/api/v1/blobs/").json()["results"]
    assert [(b["sha256"], b["size"], b["name"], b["origin"]) for b in listing] == [
        (DIGEST, len(DATA), "table.csv", "upload")
    ]
    assert owner.get("/api/v1/blobs/quota/").json() == {
        "used_bytes": len(DATA),
        "limit_bytes": 10_000,
        "uploading_bytes": 0,
    }


def test_detail_and_content_are_for_holders_only(held, alice, mallory, client_for):
    assert client_for(alice).get(f"/api/v1/blobs/{DIGEST}/").json()["sha256"] == DIGEST
    assert client_for(alice).head(f"/api/v1/blobs/{DIGEST}/").status_code == 200
    intruder = client_for(mallory)
    unknown = sha(b"nobody has this")
    for path in (f"/api/v1/blobs/{DIGEST}/", f"/api/v1/blobs/{DIGEST}/content"):
        assert intruder.get(path).status_code == 404
    # the same answer whether the blob exists for someone else or not at all
    assert (
        intruder.get(f"/api/v1/blobs/{DIGEST}/").json()
        == intruder.get(f"/api/v1/blobs/{unknown}/").json()
    )


@pytest.mark.parametrize(
    ("header", "status", "expected", "content_range"),
    [
        (None, 200, DATA, None),
        ("bytes=0-99", 206, DATA[:100], "bytes 0-99/2048"),
        ("bytes=2000-", 206, DATA[2000:], "bytes 2000-2047/2048"),
        ("bytes=-48", 206, DATA[-48:], "bytes 2000-2047/2048"),
        ("bytes=100-99999", 206, DATA[100:], "bytes 100-2047/2048"),
        ("bytes=0-1,5-6", 200, DATA, None),  # several ranges: the whole
    ],
)
def test_content_streams_with_range(
    held, alice, client_for, header, status, expected, content_range
):
    headers = {"Range": header} if header else {}
    response = client_for(alice).get(f"/api/v1/blobs/{DIGEST}/content", headers=headers)
    assert response.status_code == status
    assert body(response) == expected
    assert response["Content-Length"] == str(len(expected))
    assert response["ETag"] == f'"{DIGEST}"'
    assert response["Accept-Ranges"] == "bytes"
    assert response.get("Content-Range") == content_range


def test_a_range_past_the_end_is_416(held, alice, client_for):
    response = client_for(alice).get(
        f"/api/v1/blobs/{DIGEST}/content", headers={"Range": "bytes=4096-"}
    )
    assert (response.status_code, response["Content-Range"]) == (416, "bytes */2048")


def test_deleting_a_holding_keeps_the_bytes_for_the_collector(held, alice, client_for):
    assert client_for(alice).delete(f"/api/v1/blobs/{DIGEST}/").status_code == 204
    assert BlobHolding.objects.count() == 0
    blob = Blob.objects.get()
    assert blob.orphaned_at is not None
    assert stored_names() == [blob.storage_name]


def test_a_blob_in_use_by_an_unfinished_job_cannot_be_dropped(held, alice, client_for, monkeypatch):
    monkeypatch.setattr(blob_providers.providers, "blobs_in_use", lambda ids: set(ids))
    response = client_for(alice).delete(f"/api/v1/blobs/{DIGEST}/")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "in_use")
    assert BlobHolding.objects.count() == 1


def test_another_user_cannot_delete_a_holding(held, mallory, client_for):
    assert client_for(mallory).delete(f"/api/v1/blobs/{DIGEST}/").status_code == 404
    assert BlobHolding.objects.count() == 1


def test_the_fetch_url_serves_the_blob_with_range(held, api, store, live_server):
    url = blob_fetch_url(held, scope="attempt:7")
    if store == "filesystem":
        assert url.startswith("/api/v1/blobs/fetch/")
        whole = api.get(url)
        assert (whole.status_code, body(whole)) == (200, DATA)
        part = api.get(url, headers={"Range": "bytes=10-19"})
        assert (part.status_code, body(part)) == (206, DATA[10:20])
    else:  # a presigned GET of the object on S3: the bytes never pass through the server
        assert url.startswith("http")
        assert requests.get(url, timeout=10).content == DATA
        part = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
        assert (part.status_code, part.content) == (206, DATA[10:20])


@pytest.mark.parametrize("kind", ["forged", "expired", "other_purpose", "altered"])
def test_bad_fetch_tokens_are_404(held, api, kind, settings, monkeypatch):
    good = blob_token(DIGEST, purpose="fetch", scope="attempt:1")
    token = {
        "forged": signing.dumps(
            {"b": DIGEST, "p": "fetch", "s": ""}, key="not-our-key", salt="communipute.blobs.fetch"
        ),
        "other_purpose": blob_token(DIGEST, purpose="download"),
        "altered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "expired": good,
    }[kind]
    if kind == "expired":
        later = timezone.now() + timedelta(seconds=settings.BLOB_URL_TTL_SECONDS + 5)
        monkeypatch.setattr("time.time", lambda: later.timestamp())
    response = api.get(f"/api/v1/blobs/fetch/{token}")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
