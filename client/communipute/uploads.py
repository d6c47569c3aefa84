"""Local files to the server's blob store with tus 1.0.0 (docs/data.md, "Uploads").

Each file's sha256 is computed here first and sent in ``Upload-Metadata``: a digest you already
hold is answered "complete" at once and nothing is sent. Otherwise the file goes in PATCHes of
at most 8 MiB (the server's ``BLOB_UPLOAD_CHUNK_MAX_BYTES``; halved if the server says
``chunk_too_large``), streamed from disk. A PATCH the connection dropped stores nothing on the
server (or all of it), so after a cut the client asks ``HEAD`` where the upload stands and goes
on from there; an upload the server forgot (404) starts again. It gives up after
``RETRIES`` failures in a row without progress.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from communipute._http import RETRY_PAUSE, RETRY_PAUSE_MAX, Api, error_of
from communipute.errors import ApiError, NotFound, UploadFailed

UPLOADS_PATH = "/api/v1/uploads/"
TUS_VERSION = "1.0.0"
CHUNK_BYTES = 8 * 1024 * 1024
CHUNK_MIN_BYTES = 64 * 1024
RETRIES = 5
_BLOCK = 1024 * 1024
_SEND = 64 * 1024

# Told how far one file has got (bytes the server holds, or is being sent).
Progress = Callable[[int], None]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _metadata(pairs: dict[str, str]) -> str:
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items()
    )


def _offset(response: httpx.Response) -> int:
    try:
        return int(response.headers["Upload-Offset"])
    except (KeyError, ValueError):
        raise UploadFailed(
            f"the server's answer ({response.status_code}) has no Upload-Offset"
        ) from None


class TusUploader:
    """Uploads one file at a time; ``upload`` returns when the server holds it."""

    def __init__(self, api: Api, *, chunk_bytes: int = CHUNK_BYTES, retries: int = RETRIES):
        if not CHUNK_MIN_BYTES <= chunk_bytes <= CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be within {CHUNK_MIN_BYTES}..{CHUNK_BYTES}")
        self.api = api
        self.chunk_bytes = chunk_bytes
        self.retries = retries

    def upload(
        self,
        path: Path,
        *,
        sha256: str,
        size: int,
        name: str = "",
        progress: Progress | None = None,
    ) -> None:
        """Send ``path`` (``size`` bytes, ``sha256``) unless the server already holds it for
        you. Raises ``ApiError`` for a refusal (quota, a digest that does not match) and
        ``UploadFailed`` when the connection keeps failing."""
        tell = progress or (lambda _: None)
        location, offset = self._create(sha256, size, name or path.name)
        tell(offset)
        failures, pause = 0, RETRY_PAUSE
        resumed = False  # the last offset came from a HEAD, not a PATCH's answer
        while offset < size:
            try:
                offset = self._patch(location, path, offset, size, tell)
                failures, pause, resumed = 0, RETRY_PAUSE, False
                continue
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            except ApiError as exc:
                if exc.status == 413 and exc.code == "chunk_too_large":
                    if self.chunk_bytes // 2 < CHUNK_MIN_BYTES:
                        raise
                    self.chunk_bytes //= 2
                    continue
                if exc.status not in (409, 423) or exc.code in ("upload_closed", "upload_expired"):
                    raise
                problem = str(exc)  # offset_mismatch, or locked by a PATCH not yet given up
            failures += 1
            if failures > self.retries:
                raise UploadFailed(
                    f"uploading {path} stopped at byte {offset} of {size} after {failures} "
                    f"failures in a row: {problem}"
                )
            self.api.sleep(pause)
            pause = min(pause * 2, RETRY_PAUSE_MAX)
            found = self._head(location)
            if found is None:  # the server forgot it: start again
                location, offset = self._create(sha256, size, name or path.name)
            else:
                offset = found
            resumed = True
            tell(offset)
        if resumed:
            self._held_check(sha256, path)

    # --- the requests ------------------------------------------------------------------------

    def _create(self, sha256: str, size: int, name: str) -> tuple[str, int]:
        response = self.api.request(
            "POST",
            UPLOADS_PATH,
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Length": str(size),
                "Upload-Metadata": _metadata({"sha256": sha256, "filename": name}),
            },
            content=b"",
            retry=True,  # a creation repeated after a lost answer leaves an unused upload only
        )
        location = response.headers.get("Location")
        if response.status_code != 201 or not location:
            raise UploadFailed(f"creating the upload answered {response.status_code}")
        return location, _offset(response)

    def _head(self, location: str) -> int | None:
        try:
            response = self.api.request("HEAD", location, headers={"Tus-Resumable": TUS_VERSION})
        except NotFound:
            return None
        return _offset(response)

    def _patch(self, location: str, path: Path, offset: int, size: int, tell: Progress) -> int:
        length = min(self.chunk_bytes, size - offset)

        def body() -> Iterator[bytes]:
            sent = 0
            with path.open("rb") as handle:
                handle.seek(offset)
                while sent < length:
                    block = handle.read(min(_SEND, length - sent))
                    if not block:
                        raise UploadFailed(f"{path} shrank while it was uploaded")
                    sent += len(block)
                    tell(offset + sent)
                    yield block

        response = self.api.raw(
            "PATCH",
            location,
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(length),
            },
            content=body(),
        )
        if response.status_code >= 400:
            raise error_of(response)
        new_offset = _offset(response)
        if new_offset <= offset:
            raise UploadFailed(f"the server did not move on from byte {offset}")
        return new_offset

    def _held_check(self, sha256: str, path: Path) -> None:
        # The end was learnt from a HEAD, not from the last PATCH's answer: the last part may
        # have failed its digest check. Held means it went through.
        try:
            self.api.request("GET", f"/api/v1/blobs/{sha256}/")
        except NotFound:
            raise UploadFailed(
                f"the server did not keep {path}: its bytes did not hash to {sha256} "
                "(did the file change while it was uploaded?)"
            ) from None
