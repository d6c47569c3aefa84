"""Reads of blobs: which of them a user holds (may use in a job, download)."""

from __future__ import annotations

from collections.abc import Iterable

from accounts.models import User
from blobs.models import BlobHolding


def blob_held(user: User, sha256: str) -> BlobHolding | None:
    """The user's holding of this digest, or None: the same answer whether the blob exists
    for someone else or not at all, so a digest reveals nothing about other users' data."""
    return BlobHolding.objects.select_related("blob").filter(user=user, blob__sha256=sha256).first()


def blobs_held(user: User, sha256s: Iterable[str]) -> dict[str, BlobHolding]:
    """The user's holdings among these digests, by digest (one query, however many)."""
    wanted = set(sha256s)
    if not wanted:
        return {}
    holdings = BlobHolding.objects.select_related("blob").filter(user=user, blob__sha256__in=wanted)
    return {holding.blob.sha256: holding for holding in holdings}
