"""Oversized request bodies are refused before the server reads them (config.body_limits).

Driven through the real ASGI application with a client that streams: it counts how many
bytes the server pulled, so "refused before reading" is measured, not assumed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from config.asgi import application
from jobs.models import Job, JobOutput

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024
# A tus PATCH, the renters' and the agents' (the chunk limit, BLOB_UPLOAD_CHUNK_MAX_BYTES).
UPLOAD = "/api/v1/uploads/00000000-0000-4000-8000-000000000001/"
AGENT_UPLOAD = "/api/v1/agent/uploads/00000000-0000-4000-8000-000000000001/"
JOBS = "/api/v1/jobs/"


class StreamingClient:
    """Sends ``total`` bytes in CHUNK pieces as the server asks for them."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0
        self.messages: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.pulled >= self.total:
            await asyncio.Event().wait()  # sent everything; stay connected for the answer
        size = min(CHUNK, self.total - self.pulled)
        self.pulled += size
        return {"type": "http.request", "body": b"x" * size, "more_body": self.pulled < self.total}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return int(starts[0]["status"]) if starts else None

    @property
    def error(self) -> dict[str, Any]:
        body = b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )
        return dict(json.loads(body)["error"])


async def post(path: str, total: int, content_length: int | None) -> StreamingClient:
    """POST to ``path``, or PATCH when it is an upload (tus)."""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/octet-stream")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PATCH" if "uploads/" in path else "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    client = StreamingClient(total)
    await application(scope, client.receive, client.send)
    return client


@pytest.fixture
def small_limits(settings: Settings) -> None:
    settings.BLOB_UPLOAD_CHUNK_MAX_BYTES = 1024 * 1024
    settings.JOB_SUBMIT_MAX_BODY_BYTES = 256 * 1024


@pytest.mark.usefixtures("small_limits")
@pytest.mark.parametrize(
    ("path", "code"),
    [(UPLOAD, "chunk_too_large"), (AGENT_UPLOAD, "chunk_too_large"), (JOBS, "request_too_large")],
)
async def test_a_declared_oversize_body_is_413_before_a_byte_is_read(path: str, code: str) -> None:
    # given 200 MiB announced in Content-Length
    total = 200 * 1024 * 1024

    # when
    client = await post(path, total, content_length=total)

    # then
    assert client.status == 413
    assert client.error["code"] == code
    assert client.pulled == 0


@pytest.mark.usefixtures("small_limits")
@pytest.mark.parametrize(
    ("path", "limit"), [(UPLOAD, 1024 * 1024), (AGENT_UPLOAD, 1024 * 1024), (JOBS, 256 * 1024)]
)
@pytest.mark.parametrize("content_length", [None, 1000])
async def test_a_body_without_or_beyond_its_length_is_cut_off_at_the_limit(
    path: str, limit: int, content_length: int | None
) -> None:
    # given 200 MiB streamed with no Content-Length, or with one that says 1000 bytes
    total = 200 * 1024 * 1024

    # when
    client = await post(path, total, content_length=content_length)

    # then the server stopped reading one chunk past the limit and said why
    assert client.status == 413
    assert client.error["message"] == f"the request body is larger than {limit} bytes"
    assert client.pulled <= limit + CHUNK
    assert await _counts() == (0, 0)


@pytest.mark.usefixtures("small_limits")
async def test_a_body_within_the_limit_reaches_the_view() -> None:
    # when: a small unauthenticated submit
    client = await post(JOBS, 1000, content_length=1000)

    # then the view answered it (401: no credentials), having read it all
    assert client.status == 401
    assert client.pulled == 1000


async def _counts() -> tuple[int, int]:
    from asgiref.sync import sync_to_async

    return await sync_to_async(lambda: (Job.objects.count(), JobOutput.objects.count()))()
