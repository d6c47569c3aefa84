"""Output files go to the server with tus 1.0.0 (standard library only: the agent stays small).

``POST /api/v1/agent/uploads/`` creates an upload (``Upload-Length``; ``Upload-Metadata``
job_id, attempt, name, sha256, each base64) with the host credential as ``Authorization:
Bearer``; ``PATCH`` sends the file in chunks (at most 8 MiB, the server's
BLOB_UPLOAD_CHUNK_MAX_BYTES) streamed from disk, never read whole; after a cut, ``HEAD`` says
how much the server kept (a PATCH that broke off stores nothing) and the next PATCH starts
there. A creation answered with ``Upload-Offset`` equal to the length means the job's owner
holds those bytes already: nothing to send. docs/protocol.md "Data" has the server's side.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import logging
import ssl
import threading
import time
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urljoin, urlsplit

from agent import __version__
from agent.jobrunner.options import RunnerOptions
from agent.jobrunner.threads import in_daemon_thread
from agent.poolstore import PoolStoreError, PoolStores
from agent.protocol import PoolStore, RunningJobRef
from agent.runtime.types import OutputFile

logger = logging.getLogger("agent.jobs")

UPLOAD_TIMEOUT_SECONDS = 120
TUS_VERSION = "1.0.0"
UPLOADS_PATH = "/api/v1/agent/uploads/"
CHUNK_MAX_BYTES = 8 * 1024 * 1024  # the server's BLOB_UPLOAD_CHUNK_MAX_BYTES
_SEND_BYTES = 64 * 1024
# Answers after which the same upload may go on (its offset moved on, or it is locked by a
# PATCH the server has not noticed broke off yet); every other 4xx is final.
_RESUMABLE = (409, 423)


class UploadFailed(Exception):
    """An upload did not go through; ``is_permanent`` when trying again cannot help."""

    def __init__(self, message: str, *, is_permanent: bool) -> None:
        super().__init__(message)
        self.is_permanent = is_permanent


class OutputUploader(Protocol):
    def __call__(self, job_id: int, attempt: int, output: OutputFile) -> None:
        """Upload one file (blocking); raises UploadFailed."""
        ...


class _Slice(io.RawIOBase):
    """``length`` bytes of a file from ``offset``, read in blocks by http.client."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._file: BinaryIO = path.open("rb")
        self._file.seek(offset)
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        data = self._file.read(min(len(buffer), self._left))
        if not data:
            raise OSError("the output file shrank while it was uploaded")
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def tus_metadata(pairs: dict[str, str]) -> str:
    """``Upload-Metadata``: comma-separated ``key base64(value)``."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode('ascii')}" for key, value in pairs.items()
    )


class TusOutputUploader:
    """A tus client for the agent's outputs. Remembers each file's upload URL, so a call that
    follows a failed one resumes it (HEAD) instead of sending everything again."""

    def __init__(
        self,
        server: str,
        credential: str,
        ca_bundle: str = "",
        *,
        chunk_bytes: int = CHUNK_MAX_BYTES,
        timeout_seconds: float = UPLOAD_TIMEOUT_SECONDS,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if not 1 <= chunk_bytes <= CHUNK_MAX_BYTES:
            raise ValueError(f"chunk_bytes must be within 1..{CHUNK_MAX_BYTES}")
        self.server = server.rstrip("/")
        self.credential = credential
        self.chunk_bytes = chunk_bytes
        self.timeout_seconds = timeout_seconds
        self.context = context
        if self.context is None and self.server.startswith("https://"):
            self.context = ssl.create_default_context(cafile=ca_bundle or None)
        self._locations: dict[tuple[str, str, str], str] = {}
        self._guard = threading.Lock()

    def url(self) -> str:
        return self.server + UPLOADS_PATH

    def __call__(self, job_id: int, attempt: int, output: OutputFile) -> None:
        metadata = {
            "job_id": str(job_id),
            "attempt": str(attempt),
            "name": output.name,
            "sha256": output.sha256,
        }
        self._send(f"{job_id}/{attempt}", metadata, output)

    def release(self, release_id: int, output: OutputFile) -> None:
        """Upload an approved output a pool host read from the pool's store (``output.release``):
        ``Upload-Metadata: release, name, sha256``. Blocking; raises UploadFailed."""
        metadata = {"release": str(release_id), "name": output.name, "sha256": output.sha256}
        self._send(f"release/{release_id}", metadata, output)

    def _send(self, ref: str, metadata: dict[str, str], output: OutputFile) -> None:
        key = (ref, output.name, output.sha256)
        with self._guard:
            location = self._locations.get(key)
        offset = None
        if location is not None:
            offset = self._head(location)  # None: the server forgot it; create a new one
        if location is None or offset is None:
            location, offset = self._create(metadata, output)
            with self._guard:
                self._locations[key] = location
        while offset < output.size:
            try:
                offset = self._patch(location, output, offset)
            except UploadFailed as exc:
                if exc.is_permanent:
                    with self._guard:
                        self._locations.pop(key, None)
                raise
        with self._guard:
            self._locations.pop(key, None)

    # --- the three requests ----------------------------------------------------------------

    def _create(self, metadata: dict[str, str], output: OutputFile) -> tuple[str, int]:
        status, headers, _body = self._request(
            "POST",
            self.url(),
            {
                "Upload-Length": str(output.size),
                "Upload-Metadata": tus_metadata(metadata),
                "Content-Length": "0",
            },
        )
        if status != 201 or "location" not in headers:
            raise self._refusal("creating the upload", status, _body)
        location = urljoin(self.url(), headers["location"])
        return location, _offset(headers, default=0)

    def _head(self, location: str) -> int | None:
        status, headers, body = self._request("HEAD", location, {})
        if status in (404, 410):
            return None
        if status != 200:
            raise self._refusal("asking for the upload's offset", status, body)
        return _offset(headers)

    def _patch(self, location: str, output: OutputFile, offset: int) -> int:
        """Send one chunk from ``offset``; the server's new offset. On a cut or a 409/423 the
        offset is asked for again (HEAD) and returned, so the loop goes on from there."""
        length = min(self.chunk_bytes, output.size - offset)
        body = _Slice(output.path, offset, length)
        try:
            status, headers, answer = self._request(
                "PATCH",
                location,
                {
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                    "Content-Length": str(length),
                },
                body,
            )
        except UploadFailed:
            # A cut mid-PATCH: the server stored nothing of it (or all of it); ask.
            resumed = self._head(location)
            if resumed is None:
                raise UploadFailed("the server forgot the upload", is_permanent=False) from None
            if resumed == offset:
                raise
            return resumed
        finally:
            body.close()
        if status == 204:
            new_offset = _offset(headers)
            if new_offset <= offset:
                raise UploadFailed("the server did not take the chunk", is_permanent=False)
            return new_offset
        if status in _RESUMABLE:
            resumed = self._head(location)
            if resumed is None or resumed == offset:
                raise UploadFailed(f"HTTP {status} to a PATCH", is_permanent=False)
            return resumed
        raise self._refusal("sending a chunk", status, answer)

    # --- plumbing --------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: io.RawIOBase | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname or "",
                parts.port,
                timeout=self.timeout_seconds,
                context=self.context,
                blocksize=_SEND_BYTES,
            )
        else:
            connection = http.client.HTTPConnection(
                parts.hostname or "",
                parts.port,
                timeout=self.timeout_seconds,
                blocksize=_SEND_BYTES,
            )
        all_headers = {
            "Tus-Resumable": TUS_VERSION,
            "Authorization": f"Bearer {self.credential}",
            "Accept": "application/json",
            "User-Agent": f"communipute-agent/{__version__}",
            **headers,
        }
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(method, target, body=body, headers=all_headers)
            response = connection.getresponse()
            answer = response.read(4096) if method != "HEAD" else b""
            return response.status, {k.lower(): v for k, v in response.getheaders()}, answer
        except (OSError, http.client.HTTPException) as exc:
            raise UploadFailed(f"cannot reach the server: {exc}", is_permanent=False) from None
        finally:
            connection.close()

    @staticmethod
    def _refusal(what: str, status: int, body: bytes) -> UploadFailed:
        detail = body[:500].decode("utf-8", errors="replace")
        retryable = status >= 500 or status in (408, 429, *_RESUMABLE)
        return UploadFailed(f"{what}: HTTP {status}: {detail}", is_permanent=not retryable)


def _offset(headers: dict[str, str], default: int | None = None) -> int:
    value = headers.get("upload-offset")
    if value is None and default is not None:
        return default
    if value is None or not value.isdigit():
        raise UploadFailed(
            f"the server sent no valid Upload-Offset ({value!r})", is_permanent=False
        )
    return int(value)


async def output_upload(
    uploader: OutputUploader, ref: RunningJobRef, output: OutputFile, options: RunnerOptions
) -> bool:
    """Upload one file, retrying with backoff (doubling, at most 30 s) for up to
    ``upload_give_up_seconds``; False when it did not go through (a refusal is final)."""
    job_id, attempt = ref["job_id"], ref["attempt"]
    delay = options.upload_backoff_seconds
    give_up_at = time.monotonic() + options.upload_give_up_seconds
    while True:
        try:
            await in_daemon_thread(uploader, job_id, attempt, output)
            return True
        except UploadFailed as exc:
            if exc.is_permanent or time.monotonic() + delay > give_up_at:
                logger.warning("job %s: output %s not uploaded: %s", job_id, output.name, exc)
                return False
            logger.info("job %s: uploading %s failed (%s); retrying", job_id, output.name, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


async def output_keep(
    stores: PoolStores,
    pool_id: int,
    store: PoolStore,
    key: str,
    output: OutputFile,
    options: RunnerOptions,
) -> bool:
    """Write one file to a pool's own store (agent/poolstore.py) instead of the server, retrying
    with backoff as ``output_upload`` does; False when it did not go through."""
    delay = options.upload_backoff_seconds
    give_up_at = time.monotonic() + options.upload_give_up_seconds
    while True:
        try:
            await in_daemon_thread(stores.put, pool_id, store, key, output.path, output.sha256)
            return True
        except PoolStoreError as exc:
            if time.monotonic() + delay > give_up_at:
                logger.warning("%s not written to the pool's store: %s", key, exc)
                return False
            logger.info("writing %s to the pool's store failed (%s); retrying", key, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
