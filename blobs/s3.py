"""The S3 blob store: django-storages' S3Storage with a transfer configuration that keeps
memory bounded (docs/data.md, "Memory"). Imported only with BLOB_STORE=s3."""

from __future__ import annotations

from typing import Any

from boto3.s3.transfer import TransferConfig
from storages.backends.s3 import S3Storage

PART_BYTES = 8 * 1024 * 1024


class BlobS3Storage(S3Storage):  # type: ignore[misc]
    """A blob is written from a stream that can't seek (the parts, read in order): boto3 then
    buffers each multipart part in memory until it is sent. Without threads one part of 8 MiB
    is in memory at a time, not one for each of max_concurrency threads."""

    def __init__(self, **settings: Any) -> None:
        settings.setdefault(
            "transfer_config",
            TransferConfig(
                multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, use_threads=False
            ),
        )
        super().__init__(**settings)
