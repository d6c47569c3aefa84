"""Small blobs the server received whole, inside a request it already checked (a job group
task's argument, ``/inputs/task.json``): stored and held at once, without an upload."""

from __future__ import annotations

import hashlib

from django.core.files.base import ContentFile
from django.utils import timezone

from blobs.models import Blob, BlobHolding, HoldingOrigin, blob_storage_name
from blobs.services.uploads import digest_lock
from blobs.store import blob_store


def blob_content_hold(*, user_id: int, content: bytes, name: str) -> Blob:
    """The blob of ``content``, written to the store when new, and held by the user (origin
    ``upload``: the bytes came from them); an existing holding counts as used now.

    Takes the digest lock (``digest_lock``) and locks the blob row when it exists, as an upload
    completing does, so the collector can't delete it meanwhile. Runs in the caller's
    transaction; an object written by a transaction that then rolled back has no row and is
    written again next time. For a few kilobytes: the bytes are in memory.
    """
    sha256 = hashlib.sha256(content).hexdigest()
    digest_lock(sha256)
    blob = Blob.objects.select_for_update().filter(sha256=sha256).first()
    if blob is None:
        store, target = blob_store(), blob_storage_name(sha256)
        if store.exists(target):  # left by a rolled-back transaction: nobody else writes it
            store.delete(target)
        saved = store.save(target, ContentFile(content))
        if saved != target:
            raise RuntimeError(f"the store saved {target} as {saved}")
        blob = Blob.objects.create(sha256=sha256, size=len(content))
    elif blob.orphaned_at is not None:
        Blob.objects.filter(pk=blob.pk).update(orphaned_at=None)
        blob.orphaned_at = None
    holding, created = BlobHolding.objects.get_or_create(
        user_id=user_id, blob=blob, defaults={"origin": HoldingOrigin.UPLOAD, "name": name[:255]}
    )
    if not created:
        BlobHolding.objects.filter(pk=holding.pk).update(last_used_at=timezone.now())
    return blob
