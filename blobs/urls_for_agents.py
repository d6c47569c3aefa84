"""The URL an agent fetches a blob from (docs/data.md, "Access").

One small module so the stores share one entry point: on the filesystem store the URL is
relative to the agent's server URL and carries a signed token (purpose "fetch", one blob, one
scope, BLOB_URL_TTL_SECONDS); an S3 store answers a presigned absolute GET URL instead.
"""

from __future__ import annotations

from blobs.models import Blob
from blobs.tokens import blob_token

FETCH_PURPOSE = "fetch"


def blob_fetch_url(blob: Blob, *, scope: str) -> str:
    """A fresh short-lived URL for this blob's bytes, bound to ``scope`` (``attempt:<pk>``)."""
    return f"/api/v1/blobs/fetch/{blob_token(blob.sha256, purpose=FETCH_PURPOSE, scope=scope)}"
