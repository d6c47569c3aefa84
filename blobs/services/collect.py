"""The garbage collector (``blobs.tasks.blobs_collect_task`` on beat; docs/data.md, "Retention").

Four sweeps, in short transactions so a long sweep never holds many locks: uploads past
BLOB_UPLOAD_EXPIRY_SECONDS are aborted with their parts; holdings unused for
BLOB_RETENTION_SECONDS go unless an unfinished job uses their blob; blobs nobody holds, no
unfinished job uses and no upload under way sends are deleted, bytes and row; the rows of uploads
that ended an expiry period ago are forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from blobs.models import Blob, BlobHolding, Upload, UploadStatus
from blobs.providers import blobs_in_use
from blobs.services.uploads import digest_lock, upload_abort
from blobs.store import names_delete

BATCH = 500


@dataclass(frozen=True)
class CollectResult:
    uploads_aborted: int
    holdings_dropped: int
    blobs_deleted: int
    uploads_forgotten: int


def blobs_collect(*, now: datetime | None = None) -> CollectResult:
    """One collection pass. Opens its own transactions: call it from a task, not a view."""
    at = now or timezone.now()
    return CollectResult(
        uploads_aborted=_uploads_expire(at),
        holdings_dropped=_holdings_expire(at),
        blobs_deleted=_blobs_delete(),
        uploads_forgotten=_uploads_forget(at),
    )


def _uploads_forget(now: datetime) -> int:
    """Rows of uploads that ended (complete, failed, aborted) an expiry period ago: a client
    HEADs a finished upload only just after it finished."""
    cutoff = now - timedelta(seconds=settings.BLOB_UPLOAD_EXPIRY_SECONDS)
    ended = Upload.objects.exclude(status=UploadStatus.RECEIVING).filter(updated_at__lt=cutoff)
    with transaction.atomic(durable=True):
        count, _ = Upload.objects.filter(
            pk__in=list(ended.values_list("pk", flat=True)[:BATCH])
        ).delete()
    return count


def _uploads_expire(now: datetime) -> int:
    ids = Upload.objects.filter(status=UploadStatus.RECEIVING, expires_at__lte=now).values_list(
        "pk", flat=True
    )[:BATCH]
    count = 0
    for upload_id in list(ids):
        with transaction.atomic(durable=True):
            upload = Upload.objects.select_for_update(skip_locked=True).filter(pk=upload_id).first()
            if upload is not None and upload.status == UploadStatus.RECEIVING:
                upload_abort(upload)
                count += 1
    return count


def _holdings_expire(now: datetime) -> int:
    cutoff = now - timedelta(seconds=settings.BLOB_RETENTION_SECONDS)
    stale = list(
        BlobHolding.objects.filter(last_used_at__lt=cutoff).values_list("pk", "blob_id")[:BATCH]
    )
    used = blobs_in_use({blob_id for _, blob_id in stale})
    dropped = [pk for pk, blob_id in stale if blob_id not in used]
    with transaction.atomic(durable=True):
        # Conditional: a holding used again since the list was read stays.
        count, _ = BlobHolding.objects.filter(pk__in=dropped, last_used_at__lt=cutoff).delete()
        orphans = Blob.objects.filter(pk__in={blob_id for _, blob_id in stale}, orphaned_at=None)
        orphans.exclude(Exists(BlobHolding.objects.filter(blob=OuterRef("pk")))).update(
            orphaned_at=now
        )
    return count


def _unheld_blobs() -> list[int]:
    held = BlobHolding.objects.filter(blob=OuterRef("pk"))
    sending = Upload.objects.filter(sha256=OuterRef("sha256"), status=UploadStatus.RECEIVING)
    unheld = Blob.objects.exclude(Exists(held)).exclude(Exists(sending))
    return list(unheld.values_list("pk", flat=True)[:BATCH])


def _blobs_delete() -> int:
    candidates = _unheld_blobs()
    used = blobs_in_use(candidates)
    count = 0
    for blob_id in candidates:
        if blob_id in used:
            continue
        with transaction.atomic(durable=True):
            blob = Blob.objects.select_for_update(skip_locked=True).filter(pk=blob_id).first()
            if blob is None or BlobHolding.objects.filter(blob=blob).exists():
                continue
            # The digest lock: an upload completing now either finished first (it made a
            # holding: kept above) or waits and writes the object again after this deletion.
            digest_lock(blob.sha256)
            if Upload.objects.filter(sha256=blob.sha256, status=UploadStatus.RECEIVING).exists():
                continue
            Upload.objects.filter(blob=blob).update(blob=None)
            blob.delete()
            names_delete([blob.storage_name])
            count += 1
    return count
