"""Short-lived signed tokens, each for one blob and one purpose (docs/data.md, "Access").

A token is Django's signing of ``{"b": sha256, "p": purpose, "s": scope}`` with a salt per
purpose and a maximum age: it can't be altered, reused for another blob or purpose, or used after
it expired. ``scope`` binds it further (the attempt a fetch is for).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing

_SALT = "communipute.blobs."


@dataclass(frozen=True)
class BlobGrant:
    sha256: str
    purpose: str
    scope: str


class TokenRefused(Exception):
    """The token is forged, altered, expired or for another purpose."""


def blob_token(sha256: str, *, purpose: str, scope: str = "") -> str:
    return signing.dumps(
        {"b": sha256, "p": purpose, "s": scope}, salt=_SALT + purpose, compress=False
    )


def blob_token_check(token: str, *, purpose: str, max_age: int | None = None) -> BlobGrant:
    age = settings.BLOB_URL_TTL_SECONDS if max_age is None else max_age
    try:
        data = signing.loads(token, salt=_SALT + purpose, max_age=age)
    except signing.BadSignature as exc:  # SignatureExpired is one
        raise TokenRefused(str(exc)) from None
    if not isinstance(data, dict) or data.get("p") != purpose or not isinstance(data.get("b"), str):
        raise TokenRefused("not a token for this purpose")
    return BlobGrant(sha256=data["b"], purpose=purpose, scope=str(data.get("s", "")))
