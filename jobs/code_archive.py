"""Reading a code archive (a zip blob the renter holds) from the store without loading it.

A zip's central directory sits at its end, so ``zipfile`` reads only that (seeking in the
store's file object) to list the members; nothing is decompressed here. The end record is read
first and a directory too large to list in memory is refused before ``zipfile`` reads it.
"""

from __future__ import annotations

import zipfile
import zlib

from blobs.models import Blob, blob_storage_name
from blobs.store import blob_store
from config.errors import ValidationFailed
from jobs.validation import archive_paths_check

# A zip's central directory is read into memory (about 100 bytes an entry, more as ZipInfos).
ARCHIVE_MAX_MEMBERS = 100_000
ARCHIVE_MAX_DIRECTORY_BYTES = 32 * 1024 * 1024


def code_archive_paths(blob: Blob, *, work_mb: int) -> list[str]:
    """The archive's file paths, or a 400 ``bad_archive`` (field ``archive_sha256``) saying
    why it can't be the job's code (``jobs.validation.archive_paths_check`` for the rules)."""
    try:
        with blob_store().open(blob_storage_name(blob.sha256), "rb") as stream:
            end = zipfile._EndRecData(stream)  # type: ignore[attr-defined]
            if end is None:
                raise _bad("is not a zip file")
            if end[zipfile._ECD_ENTRIES_TOTAL] > ARCHIVE_MAX_MEMBERS:  # type: ignore[attr-defined]
                raise _bad(f"has more than {ARCHIVE_MAX_MEMBERS} entries")
            if end[zipfile._ECD_SIZE] > ARCHIVE_MAX_DIRECTORY_BYTES:  # type: ignore[attr-defined]
                raise _bad(f"has a directory larger than {ARCHIVE_MAX_DIRECTORY_BYTES} bytes")
            with zipfile.ZipFile(stream) as archive:
                return archive_paths_check(archive, work_mb=work_mb)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError) as exc:
        raise _bad(f"can't be read: {exc}") from None


def _bad(why: str) -> ValidationFailed:
    return ValidationFailed(
        f"the code archive {why}", code="bad_archive", fields={"archive_sha256": [why]}
    )
