"""Small blobs the server writes itself, from bytes it received whole in a request it already
checked (a job group task's argument, ``/inputs/task.json``): stored at once, without an upload
and without a holding."""

from __future__ import annotations

import hashlib

from django.core.files.base import ContentFile

from blobs.models import Blob, blob_storage_name
from blobs.services.uploads import digest_lock
from blobs.store import blob_store


def blob_content_store(content: bytes) -> Blob:
    """The blob of ``content``, written to the store when new.

    Nobody holds it: it lives while an unfinished job reads it (``blobs.providers``), and the
    collector removes it after; whoever needs it again stores it again. Takes the digest lock
    (``digest_lock``) and locks the blob row when it exists, as an upload completing does, so
    the collector can't delete it before the caller's transaction has made a job read it. Runs
    in the caller's transaction; an object written by a transaction that then rolled back has
    no row and is written again next time. For a few kilobytes: the bytes are in memory.
    """
    sha256 = hashlib.sha256(content).hexdigest()
    digest_lock(sha256)
    blob = Blob.objects.select_for_update().filter(sha256=sha256).first()
    if blob is not None:
        return blob
    store, target = blob_store(), blob_storage_name(sha256)
    if store.exists(target):  # left by a rolled-back transaction: nobody else writes it
        store.delete(target)
    saved = store.save(target, ContentFile(content))
    if saved != target:
        raise RuntimeError(f"the store saved {target} as {saved}")
    return Blob.objects.create(sha256=sha256, size=len(content))
