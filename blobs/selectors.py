"""Reads of the blobs app: holdings (which blobs a user may use in a job, download)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from accounts.models import User
from blobs.models import BlobHolding
from config.errors import NotFound


def holdings_of(user: User) -> QuerySet[BlobHolding]:
    """The user's holdings, newest first."""
    return BlobHolding.objects.filter(user=user).select_related("blob").order_by("-pk")


def holding_of(user: User, sha256: str) -> BlobHolding:
    """404 unless the user holds it: the same answer whether someone else does or nobody."""
    holding = holdings_of(user).filter(blob__sha256=sha256).first()
    if holding is None:
        raise NotFound("you hold no blob with this sha256")
    return holding


def blobs_held(user: User, sha256s: Iterable[str]) -> dict[str, BlobHolding]:
    """The user's holdings among these digests, by digest (one query, however many): the same
    answer whether a blob exists for someone else or not at all, so a digest reveals nothing
    about other users' data."""
    wanted = set(sha256s)
    if not wanted:
        return {}
    holdings = BlobHolding.objects.select_related("blob").filter(user=user, blob__sha256__in=wanted)
    return {holding.blob.sha256: holding for holding in holdings}
