"""Output files go to the server over HTTP (standard library only: the agent stays small).

``POST /api/v1/agent/jobs/{job}/attempts/{n}/outputs/`` with multipart ``name`` and ``file``
and the host credential as ``Authorization: Bearer``. Files are streamed from disk, never read
into memory whole. Repeating an upload is a no-op on the server, so retrying is safe.
"""

from __future__ import annotations

import asyncio
import io
import logging
import ssl
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol

from agent import __version__
from agent.jobrunner.options import RunnerOptions
from agent.jobrunner.threads import in_daemon_thread
from agent.protocol import RunningJobRef
from agent.runtime.types import OutputFile

logger = logging.getLogger("agent.jobs")

UPLOAD_TIMEOUT_SECONDS = 120


class UploadFailed(Exception):
    """An upload did not go through; ``is_permanent`` when trying again cannot help."""

    def __init__(self, message: str, *, is_permanent: bool) -> None:
        super().__init__(message)
        self.is_permanent = is_permanent


class OutputUploader(Protocol):
    def __call__(self, job_id: int, attempt: int, output: OutputFile) -> None:
        """Upload one file (blocking); raises UploadFailed."""
        ...


class _MultipartBody(io.RawIOBase):
    """head + the file's bytes + tail, read in blocks by http.client."""

    def __init__(self, head: bytes, path: Path, tail: bytes) -> None:
        super().__init__()
        self._parts: list[bytes | Path] = [head, path, tail]
        self._current: BinaryIO | io.BytesIO | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            if self._current is None:
                if not self._parts:
                    return 0
                part = self._parts.pop(0)
                self._current = part.open("rb") if isinstance(part, Path) else io.BytesIO(part)
            data = self._current.read(len(buffer))
            if data:
                buffer[: len(data)] = data
                return len(data)
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        super().close()


def multipart_parts(name: str, boundary: str) -> tuple[bytes, bytes]:
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="name"\r\n\r\n'
        f"{name}\r\n"
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail


class HttpOutputUploader:
    def __init__(self, server: str, credential: str, ca_bundle: str = "") -> None:
        self.server = server.rstrip("/")
        self.credential = credential
        self.context = (
            ssl.create_default_context(cafile=ca_bundle or None)
            if self.server.startswith("https://")
            else None
        )

    def url(self, job_id: int, attempt: int) -> str:
        return f"{self.server}/api/v1/agent/jobs/{job_id}/attempts/{attempt}/outputs/"

    def __call__(self, job_id: int, attempt: int, output: OutputFile) -> None:
        boundary = uuid.uuid4().hex
        head, tail = multipart_parts(output.name, boundary)
        body = _MultipartBody(head, output.path, tail)
        request = urllib.request.Request(  # noqa: S310 (the server URL is http or https)
            self.url(job_id, attempt),
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.credential}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + output.size + len(tail)),
                "Accept": "application/json",
                "User-Agent": f"communipute-agent/{__version__}",
            },
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=UPLOAD_TIMEOUT_SECONDS, context=self.context
            ) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", errors="replace")
            retryable = exc.code >= 500 or exc.code in (408, 429)
            raise UploadFailed(f"HTTP {exc.code}: {detail}", is_permanent=not retryable) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UploadFailed(f"cannot reach the server: {reason}", is_permanent=False) from None
        finally:
            body.close()


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
