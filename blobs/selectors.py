"""Reads of the blobs app."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from blobs.models import Blob, BlobHolding
from config.errors import NotFound


def holdings_of(user_id: int) -> QuerySet[BlobHolding]:
    """The user's holdings, newest first."""
    return BlobHolding.objects.filter(user_id=user_id).select_related("blob").order_by("-pk")


def holding_of(user_id: int, sha256: str) -> BlobHolding:
    """404 unless the user holds it: the same answer whether someone else does or nobody."""
    holding = holdings_of(user_id).filter(blob__sha256=sha256).first()
    if holding is None:
        raise NotFound("you hold no blob with this sha256")
    return holding


def blob_held(user_id: int, sha256: str) -> Blob | None:
    holding = holdings_of(user_id).filter(blob__sha256=sha256).first()
    return holding.blob if holding is not None else None


def blobs_held(user_id: int, sha256s: Iterable[str]) -> dict[str, Blob]:
    found = holdings_of(user_id).filter(blob__sha256__in=list(sha256s))
    return {holding.blob.sha256: holding.blob for holding in found}
