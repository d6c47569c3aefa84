"""A user's holdings: dropping one (docs/data.md, "Retention")."""

from __future__ import annotations

from django.utils import timezone

from blobs.models import Blob, BlobHolding, HoldingOrigin
from blobs.providers import blobs_in_use
from config.errors import Conflict, NotFound


def holding_delete(*, user_id: int, sha256: str) -> None:
    """Drop the user's holding of ``sha256`` (404 if they hold none).

    Refused (409 ``in_use``) while an unfinished job uses the blob. The blob's bytes stay
    until the collector finds nobody holds or uses them. Locks the holding's row.
    """
    holding = (
        BlobHolding.objects.select_for_update()
        .filter(user_id=user_id, blob__sha256=sha256)
        .select_related("blob")
        .first()
    )
    if holding is None:
        raise NotFound("you hold no blob with this sha256")
    if blobs_in_use([holding.blob_id]):
        raise Conflict(
            "an unfinished job uses this blob; delete it once the job has finished",
            code="in_use",
            fields={"sha256": ["In use by an unfinished job."]},
        )
    holding.delete()
    if not BlobHolding.objects.filter(blob_id=holding.blob_id).exists():
        Blob.objects.filter(pk=holding.blob_id).update(orphaned_at=timezone.now())


def holdings_of_outputs_drop(*, user_id: int, blob_ids: set[int]) -> None:
    """The jobs app discarded outputs (undeclared at job.finished): the owner's holdings that
    only those outputs gave (origin ``output``) go, with no in-use check (no job uses an
    output it discarded). Locks nothing beyond the deleted rows."""
    if not blob_ids:
        return
    BlobHolding.objects.filter(
        user_id=user_id, blob_id__in=blob_ids, origin=HoldingOrigin.OUTPUT
    ).delete()
    unheld = Blob.objects.filter(pk__in=blob_ids, orphaned_at=None).exclude(
        pk__in=BlobHolding.objects.filter(blob_id__in=blob_ids).values("blob_id")
    )
    unheld.update(orphaned_at=timezone.now())
