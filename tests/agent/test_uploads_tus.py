"""The agent's tus 1.0 output uploader against a fake tus server on loopback that speaks the
contract (docs/protocol.md "Data"), connection cuts mid-PATCH included."""

from __future__ import annotations

import asyncio
import socket

import pytest

from agent.jobrunner.uploads import TusOutputUploader, UploadFailed, output_upload
from agent.protocol import RunningJobRef
from tests.agent.blob_servers import TusState, sha256_of, tus_server_start
from tests.agent.jobrunner_fakes import FAST, output_file

CONTENT = bytes(range(256)) * 400  # 102400 bytes: 4 chunks of 30000 and the rest


@pytest.fixture
def tus():
    state = TusState()
    served = tus_server_start(state)
    yield state, served
    served.stop()


def uploader_for(served, chunk_bytes: int = 30_000) -> TusOutputUploader:
    return TusOutputUploader(
        f"http://127.0.0.1:{served.port}", "cph_secret", chunk_bytes=chunk_bytes, timeout_seconds=5
    )


def methods(state: TusState) -> list[str]:
    return [method for method, _path, _headers in state.requests]


def test_an_output_is_created_with_its_metadata_and_sent_in_chunks(tus, tmp_path):
    state, served = tus
    output = output_file(tmp_path, "result.bin", CONTENT)

    uploader_for(served)(7, 2, output)

    [upload] = state.uploads.values()
    assert bytes(upload.data) == CONTENT
    assert upload.metadata == {
        "job_id": "7",
        "attempt": "2",
        "name": "result.bin",
        "sha256": sha256_of(CONTENT),
    }
    assert methods(state) == ["POST", "PATCH", "PATCH", "PATCH", "PATCH"]
    _method, path, headers = state.requests[0]
    assert path == "/api/v1/agent/uploads/"
    assert headers["Authorization"] == "Bearer cph_secret"
    assert headers["Tus-Resumable"] == "1.0.0"
    assert headers["Upload-Length"] == str(len(CONTENT))
    patches = [headers for method, _p, headers in state.requests if method == "PATCH"]
    assert [h["Upload-Offset"] for h in patches] == ["0", "30000", "60000", "90000"]
    assert {h["Content-Type"] for h in patches} == {"application/offset+octet-stream"}


def test_a_cut_mid_patch_is_resumed_after_a_head(tus, tmp_path):
    state, served = tus
    state.cut_patches = {2: 12_345}  # the second PATCH breaks off: the server keeps none of it
    output = output_file(tmp_path, "result.bin", CONTENT)
    uploader = uploader_for(served)

    with pytest.raises(UploadFailed) as failed:
        uploader(7, 2, output)
    assert failed.value.is_permanent is False
    [upload] = state.uploads.values()
    assert len(upload.data) == 30_000

    # the retry asks where the upload stands and goes on from there, on the same upload
    uploader(7, 2, output)

    assert bytes(upload.data) == CONTENT
    assert methods(state) == [
        "POST", "PATCH", "PATCH", "HEAD",  # cut, then asked: still 30000
        "HEAD", "PATCH", "PATCH", "PATCH",  # the retry resumes the same upload
    ]  # fmt: skip


def test_output_upload_retries_through_cuts_with_backoff(tus, tmp_path):
    state, served = tus
    state.cut_patches = {1: 100, 3: 29_999}
    output = output_file(tmp_path, "result.bin", CONTENT)
    ref = RunningJobRef(job_id=7, attempt=2)

    assert asyncio.run(output_upload(uploader_for(served), ref, output, FAST)) is True

    [upload] = state.uploads.values()
    assert bytes(upload.data) == CONTENT
    assert methods(state).count("POST") == 1


def test_a_creation_answered_complete_sends_nothing(tus, tmp_path):
    state, served = tus
    state.complete_at_once = True

    uploader_for(served)(7, 2, output_file(tmp_path, "result.bin", CONTENT))

    assert methods(state) == ["POST"]


def test_an_empty_output_is_only_created(tus, tmp_path):
    state, served = tus

    uploader_for(served)(7, 2, output_file(tmp_path, "empty.txt", b""))

    assert methods(state) == ["POST"]
    [upload] = state.uploads.values()
    assert upload.length == 0


def test_a_409_is_resolved_by_asking_for_the_offset(tus, tmp_path):
    state, served = tus
    state.patch_status = [409]  # e.g. the server took a PATCH whose answer was lost

    with pytest.raises(UploadFailed) as failed:
        uploader_for(served)(7, 2, output_file(tmp_path, "result.bin", CONTENT))

    # the HEAD says nothing moved: worth a retry, never final
    assert failed.value.is_permanent is False
    assert methods(state) == ["POST", "PATCH", "HEAD"]


def test_an_upload_the_server_forgot_is_created_again(tus, tmp_path):
    state, served = tus
    state.cut_patches = {1: 10}
    output = output_file(tmp_path, "result.bin", CONTENT)
    uploader = uploader_for(served)
    with pytest.raises(UploadFailed):
        uploader(7, 2, output)
    state.forget = True  # it expired on the server before the retry

    uploader(7, 2, output)

    assert methods(state).count("POST") == 2
    [upload] = state.uploads.values()
    assert bytes(upload.data) == CONTENT


@pytest.mark.parametrize(("status", "is_permanent"), [(503, False), (429, False), (400, True)])
def test_refused_creations_say_whether_a_retry_can_help(tus, tmp_path, status, is_permanent):
    state, served = tus
    state.create_status = status

    with pytest.raises(UploadFailed) as failed:
        uploader_for(served)(1, 1, output_file(tmp_path, "a.txt", b"a"))

    assert failed.value.is_permanent is is_permanent
    assert f"HTTP {status}" in str(failed.value)
    assert state.uploads == {}


def test_a_refused_chunk_is_final(tus, tmp_path):
    state, served = tus
    state.patch_status = [400]

    with pytest.raises(UploadFailed) as failed:
        uploader_for(served)(1, 1, output_file(tmp_path, "a.txt", b"abc"))

    assert failed.value.is_permanent is True


def test_an_unreachable_server_is_worth_a_retry(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    uploader = TusOutputUploader(f"http://127.0.0.1:{port}", "cph_x")

    with pytest.raises(UploadFailed) as failed:
        uploader(1, 1, output_file(tmp_path, "a.txt", b"a"))

    assert failed.value.is_permanent is False
