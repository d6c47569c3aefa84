"""The blob store: Django's storage API under the ``blobs`` alias (docs/data.md, "The store").

The local disk (``FileSystemStorage`` under BLOB_DIR) by default, any S3-compatible store with
``BLOB_STORE=s3`` (django-storages' ``S3Storage``). Everything here streams in
``READ_BYTES`` pieces: no function holds a whole part, let alone a whole blob, in memory. Reads
from S3 go through boto3's streaming body rather than ``S3Storage.open``, which downloads the
whole object into a temporary file (in memory by default) before the first byte is read.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

READ_BYTES = 64 * 1024


def blob_store() -> Storage:
    return storages["blobs"]


def store_is_filesystem(store: Storage | None = None) -> bool:
    """Whether the store is the local disk (fetches then go through the server's own URL)."""
    return isinstance(store or blob_store(), FileSystemStorage)


def stream_read(name: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """The bytes of ``name`` from ``start`` to ``end`` inclusive (the end when None)."""
    store = blob_store()
    if store_is_filesystem(store):
        yield from _file_read(store, name, start, end)
        return
    wanted = f"bytes={start}-{'' if end is None else end}"
    body = _s3_object(store, name).get(Range=wanted)["Body"]
    try:
        yield from body.iter_chunks(READ_BYTES)
    finally:
        body.close()


def _file_read(store: Storage, name: str, start: int, end: int | None) -> Iterator[bytes]:
    with store.open(name, "rb") as handle:
        handle.seek(start)
        left = None if end is None else end - start + 1
        while left is None or left > 0:
            block = handle.read(READ_BYTES if left is None else min(READ_BYTES, left))
            if not block:
                return
            if left is not None:
                left -= len(block)
            yield block


def _s3_object(store: Storage, name: str) -> Any:
    # S3Storage's own helpers: the bucket and the key under its location prefix.
    s3: Any = store
    return s3.bucket.Object(s3._normalize_name(name))


class Readable(Protocol):
    """A request body: Django's HttpRequest reads like a file."""

    def read(self, size: int = ..., /) -> bytes: ...


class BodyIncomplete(Exception):
    """A request body ended before the bytes it declared."""


def part_write(name: str, body: Readable, length: int) -> None:
    """Store exactly ``length`` bytes read from ``body`` as ``name``, or nothing at all.

    The bytes go to a temporary file first: a body that ends early raises BodyIncomplete and
    leaves no part behind (the client resends it whole after a HEAD).
    """
    with tempfile.TemporaryFile() as spool:
        received = 0
        while received < length:
            block = body.read(min(READ_BYTES, length - received))
            if not block:
                raise BodyIncomplete(f"the body ended after {received} of {length} bytes")
            spool.write(block)
            received += len(block)
        spool.seek(0)
        saved = blob_store().save(name, File(spool))
    if saved != name:
        raise RuntimeError(f"the store saved {name} as {saved}")


class _Concatenation(io.RawIOBase):
    """The parts read one after another as one stream, hashed as it is read."""

    def __init__(self, names: Iterable[str]) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self._pieces = (block for name in names for block in stream_read(name))
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            block = next(self._pieces, None)
            if block is None:
                return 0
            self.digest.update(block)
            self.size += len(block)
            self._left = block
        taken = self._left[: len(buffer)]
        buffer[: len(taken)] = taken
        self._left = self._left[len(taken) :]
        return len(taken)


def parts_digest(names: Iterable[str], *, write_to: str | None) -> tuple[str, int]:
    """sha256 and size of the parts in order, written as ``write_to`` in the same pass.

    One streaming pass: the store reads from the concatenation while it hashes. ``write_to``
    None only hashes (the blob is already stored).
    """
    stream = _Concatenation(names)
    if write_to is None:
        while stream.read(READ_BYTES):
            pass
    else:
        reader = io.BufferedReader(stream, READ_BYTES)
        saved = blob_store().save(write_to, File(reader, name=write_to))
        if saved != write_to:
            raise RuntimeError(f"the store saved {write_to} as {saved}")
    return stream.digest.hexdigest(), stream.size


def names_delete(names: Iterable[str]) -> None:
    store = blob_store()
    for name in names:
        store.delete(name)


def stored_size(name: str) -> int | None:
    store = blob_store()
    return store.size(name) if store.exists(name) else None
