"""The URL an agent fetches a blob from (docs/data.md, "Access")."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from blobs.models import Blob
from blobs.store import blob_store, store_is_filesystem
from blobs.tokens import blob_token

FETCH_PURPOSE = "fetch"


def blob_fetch_url(blob: Blob, *, scope: str) -> str:
    """A URL that serves ``blob`` for BLOB_URL_TTL_SECONDS, with Range.

    On the local store a path of this server (the agent joins it to its server URL) carrying a
    signed token for this blob and ``scope``; on S3 a presigned GET of the object itself, so the
    bytes never pass through a daphne.
    """
    store = blob_store()
    if store_is_filesystem(store):
        return f"/api/v1/blobs/fetch/{blob_token(blob.sha256, purpose=FETCH_PURPOSE, scope=scope)}"
    s3: Any = store  # S3Storage.url takes the expiry
    return str(s3.url(blob.storage_name, expire=settings.BLOB_URL_TTL_SECONDS))
