"""The tus client (docs/data.md): the digest first, then PATCHes from disk; after a cut, HEAD
says where the server stands and the upload goes on from there, never from the start."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
from pathlib import Path

import pytest

from communipute import ApiError, UploadFailed
from communipute.uploads import TusUploader
from tests.client.fakes import FakeServer

CHUNK = 64 * 1024


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(5 * CHUNK + 123))
    return path


def upload(server: FakeServer, path: Path, **kwargs) -> tuple[str, list[int]]:
    """Upload ``path`` through the fake server in 64 KiB PATCHes; its digest and the offsets
    the progress callback was told."""
    client = server.client()
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    told: list[int] = []
    TusUploader(client._api, chunk_bytes=CHUNK, **kwargs).upload(
        path, sha256=sha256, size=path.stat().st_size, progress=told.append
    )
    return sha256, told


def patch_offsets(server: FakeServer) -> list[int]:
    return [int(h["upload-offset"]) for m, _, h in server.log if m == "PATCH"]


def test_a_file_goes_up_in_parts_with_its_sha256_in_the_metadata(server, data) -> None:
    # when
    sha256, told = upload(server, data)

    # then: held, byte for byte; one creation, one PATCH per part; progress reached the end
    assert server.blobs[sha256] == data.read_bytes()
    assert server.calls("POST") == ["POST /api/v1/uploads/"]
    assert patch_offsets(server) == [0, CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK, 5 * CHUNK]
    assert told[-1] == data.stat().st_size
    [(_, _, created)] = [entry for entry in server.log if entry[0] == "POST"]
    assert created["upload-length"] == str(data.stat().st_size)
    assert created["tus-resumable"] == "1.0.0"
    assert f"sha256 {base64.b64encode(sha256.encode()).decode()}" in created["upload-metadata"]


def test_a_connection_cut_mid_patch_is_resumed_from_heads_offset(server, data) -> None:
    # given: the third PATCH is cut halfway through its body (the server keeps nothing of it)
    server.patch_plan = ["ok", "ok", "cut"]

    # when
    sha256, told = upload(server, data)

    # then: HEAD after the cut, the third part sent again from its start, nothing before it
    assert server.blobs[sha256] == data.read_bytes()
    assert server.calls("HEAD") == [f"HEAD /api/v1/uploads/{next(iter(server.uploads))}/"]
    assert patch_offsets(server) == [
        0,
        CHUNK,
        2 * CHUNK,
        2 * CHUNK,
        3 * CHUNK,
        4 * CHUNK,
        5 * CHUNK,
    ]
    # the progress went back to what the server holds, then on to the end
    assert (3 * CHUNK, 2 * CHUNK) in itertools.pairwise(told)
    assert told[-1] == data.stat().st_size


def test_a_part_stored_whose_answer_was_lost_is_not_sent_again(server, data) -> None:
    # given: the second PATCH is stored but its answer never arrives
    server.patch_plan = ["ok", "lost"]

    # when
    sha256, _ = upload(server, data)

    # then: HEAD says the server has two parts; the third is next
    assert server.blobs[sha256] == data.read_bytes()
    assert patch_offsets(server) == [0, CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK, 5 * CHUNK]
    assert len(server.calls("HEAD")) == 1


def test_the_last_part_lost_on_the_way_back_is_checked_by_the_blob_held(server, data) -> None:
    # given: the last PATCH completes the upload, but its answer is lost
    server.patch_plan = ["ok"] * 5 + ["lost"]

    # when
    sha256, _ = upload(server, data)

    # then: HEAD says it is all there; the client asks whether the server keeps the blob
    assert server.calls("GET") == [f"GET /api/v1/blobs/{sha256}/"]


def test_an_offset_mismatch_and_a_lock_are_resolved_by_head(server, data) -> None:
    server.patch_plan = ["mismatch", "locked"]

    sha256, _ = upload(server, data)

    assert server.blobs[sha256] == data.read_bytes()
    assert len(server.calls("HEAD")) == 2


def test_an_upload_the_server_forgot_starts_again(server, data) -> None:
    # given: a cut, after which the server no longer knows the upload (expired, collected)
    server.patch_plan = ["ok", "cut"]
    server.forget_uploads = True

    # when
    sha256, _ = upload(server, data)

    # then: a second creation, sent from byte 0
    assert server.blobs[sha256] == data.read_bytes()
    assert server.calls("POST") == ["POST /api/v1/uploads/"] * 2
    assert patch_offsets(server)[:3] == [0, CHUNK, 0]


def test_a_digest_you_hold_is_complete_at_once_and_nothing_is_sent(server, data) -> None:
    # given
    held = data.read_bytes()
    server.blobs[hashlib.sha256(held).hexdigest()] = held

    # when
    _, told = upload(server, data)

    # then
    assert server.calls("PATCH") == []
    assert told == [len(held)]


def test_it_gives_up_after_failures_in_a_row_without_progress(server, data) -> None:
    server.patch_plan = ["cut"] * 10

    with pytest.raises(UploadFailed, match="after 4 failures in a row"):
        upload(server, data, retries=3)

    assert len(server.calls("HEAD")) == 3


def test_a_server_with_smaller_parts_gets_smaller_parts(server, data) -> None:
    # given: the server takes at most 64 KiB; the client starts at 128 KiB
    server.chunk_max = CHUNK
    client = server.client()
    sha256 = hashlib.sha256(data.read_bytes()).hexdigest()

    # when
    TusUploader(client._api, chunk_bytes=2 * CHUNK).upload(
        data, sha256=sha256, size=data.stat().st_size
    )

    # then: one refused PATCH, then 64 KiB parts
    assert server.blobs[sha256] == data.read_bytes()
    assert patch_offsets(server)[:3] == [0, 0, CHUNK]


def test_bytes_that_do_not_hash_to_the_digest_are_refused(server, tmp_path) -> None:
    # given: a file that changes after it was hashed
    path = tmp_path / "moving.bin"
    path.write_bytes(b"a" * 1000)
    client = server.client()
    sha256 = hashlib.sha256(b"a" * 1000).hexdigest()
    path.write_bytes(b"b" * 1000)

    with pytest.raises(ApiError) as raised:
        TusUploader(client._api, chunk_bytes=CHUNK).upload(path, sha256=sha256, size=1000)

    assert (raised.value.status, raised.value.code) == (400, "digest_mismatch")
    assert server.blobs == {}
