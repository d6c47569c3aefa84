"""The upload engine (tus 1.0, docs/data.md "Uploads"): one for renters' uploads and agents'
outputs. The views parse tus headers and call these; the jobs app calls them for outputs after
its own checks.

Each function runs in the caller's durable transaction (the view's ``durable_call``) and says
which rows it locks. A digest mismatch is not raised: raising would roll back the upload's
``failed`` status and the deletion of its parts, so ``upload_receive`` returns the failed
upload and the caller raises ``digest_mismatch_error`` after the commit.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from blobs.models import Blob, BlobHolding, HoldingOrigin, Upload, UploadStatus, blob_storage_name
from blobs.store import (
    BodyIncomplete,
    Readable,
    names_delete,
    part_write,
    parts_digest,
    stored_size,
)
from config.errors import Conflict, NotFound, TooLarge, ValidationFailed

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_check(value: str, *, field: str = "sha256") -> str:
    if not _SHA256.match(value):
        raise ValidationFailed(
            "sha256 must be 64 lowercase hexadecimal characters",
            fields={field: ["Not 64 lowercase hexadecimal characters."]},
        )
    return value


def quota_used(user_id: int) -> tuple[int, int]:
    """(bytes held, bytes of the user's own uploads under way)."""
    held = Blob.objects.filter(holdings__user_id=user_id).aggregate(total=Sum("size"))["total"]
    sending = Upload.objects.filter(
        user_id=user_id, scope="", status=UploadStatus.RECEIVING, expires_at__gt=timezone.now()
    ).aggregate(total=Sum("length"))["total"]
    return held or 0, sending or 0


def upload_create(
    *,
    user_id: int,
    sha256: str,
    length: int,
    name: str = "",
    scope: str = "",
    origin: HoldingOrigin = HoldingOrigin.UPLOAD,
) -> Upload:
    """A new upload of ``length`` bytes said to have ``sha256``, for ``user_id`` to hold.

    Already held with that size: the upload is created complete (nothing to send). A user's
    own upload (``scope`` "") counts toward BLOB_QUOTA_BYTES with what they hold and what they
    are sending; the user row is locked so two creations can't both pass the check. An agent's
    output (``scope`` set by the jobs app) is bounded by the job's outputs limits instead.
    """
    sha256_check(sha256)
    if length < 0:
        raise ValidationFailed("Upload-Length must be 0 or more", fields={"Upload-Length": ["."]})
    if length > settings.BLOB_UPLOAD_MAX_BYTES:
        raise TooLarge(
            f"an upload is at most {settings.BLOB_UPLOAD_MAX_BYTES} bytes, not {length}",
            fields={"Upload-Length": [f"At most {settings.BLOB_UPLOAD_MAX_BYTES} bytes."]},
        )
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.BLOB_UPLOAD_EXPIRY_SECONDS)
    held = BlobHolding.objects.filter(user_id=user_id, blob__sha256=sha256, blob__size=length)
    if held.update(last_used_at=now):
        blob = Blob.objects.get(sha256=sha256)
        return Upload.objects.create(
            user_id=user_id,
            scope=scope,
            name=name,
            sha256=sha256,
            length=length,
            offset=length,
            status=UploadStatus.COMPLETE,
            blob=blob,
            expires_at=expires_at,
        )
    if not scope:
        _quota_check(user_id, length)
    upload = Upload.objects.create(
        user_id=user_id, scope=scope, name=name, sha256=sha256, length=length, expires_at=expires_at
    )
    if length == 0:
        _upload_complete(upload, origin)
    return upload


def _quota_check(user_id: int, length: int) -> None:
    list(get_user_model().objects.select_for_update().filter(pk=user_id).values_list("pk"))
    held, sending = quota_used(user_id)
    limit = settings.BLOB_QUOTA_BYTES
    if held + sending + length > limit:
        raise TooLarge(
            f"this upload of {length} bytes would pass your storage quota: {held + sending} of "
            f"{limit} bytes are used (held and uploading)",
            code="quota_exceeded",
            fields={"Upload-Length": [f"{held + sending} of {limit} bytes used."]},
        )


def upload_locked(upload_id: uuid.UUID, *, user_id: int | None, scope: str | None) -> Upload:
    """The upload, its row locked; 404 unless it is ``user_id``'s (or ``scope``'s)."""
    found = Upload.objects.select_for_update().filter(pk=upload_id)
    if user_id is not None:
        found = found.filter(user_id=user_id, scope="")
    if scope is not None:
        found = found.filter(scope=scope)
    upload = found.first()
    if upload is None:
        raise NotFound("no such upload")
    return upload


def upload_receive(
    upload: Upload,
    *,
    offset: int,
    body: Readable,
    length: int,
    origin: HoldingOrigin = HoldingOrigin.UPLOAD,
) -> Upload:
    """One PATCH: ``length`` bytes of ``body`` at ``offset``, stored as the next part.

    ``upload`` comes from ``upload_locked`` (its row locked for the whole PATCH, so two PATCHes
    of one upload are one after the other). On the last byte the upload completes (see
    ``_upload_complete``). Refused: a closed or expired upload (409), an offset other than the
    stored one (409 ``offset_mismatch``), a body over BLOB_UPLOAD_CHUNK_MAX_BYTES (413
    ``chunk_too_large``) or past the length (400), a body shorter than it declared (400
    ``incomplete_body``, nothing stored).
    """
    _receivable_check(upload)
    if offset != upload.offset:
        raise Conflict(
            f"Upload-Offset is {offset}, the upload is at {upload.offset}",
            code="offset_mismatch",
            fields={"Upload-Offset": [f"The upload is at {upload.offset}."]},
        )
    if length > settings.BLOB_UPLOAD_CHUNK_MAX_BYTES:
        raise TooLarge(
            f"a PATCH carries at most {settings.BLOB_UPLOAD_CHUNK_MAX_BYTES} bytes, not {length}",
            code="chunk_too_large",
            fields={"Content-Length": [f"At most {settings.BLOB_UPLOAD_CHUNK_MAX_BYTES}."]},
        )
    if offset + length > upload.length:
        raise ValidationFailed(
            f"{length} bytes at {offset} pass the upload's length {upload.length}",
            fields={"Content-Length": [f"At most {upload.length - offset} bytes are left."]},
        )
    if length == 0:
        return upload
    try:
        part_write(upload.part_name(upload.parts), body, length)
    except BodyIncomplete as exc:
        raise ValidationFailed(
            f"{exc}; nothing was stored", code="incomplete_body", fields={"Content-Length": ["."]}
        ) from None
    upload.parts += 1
    upload.offset += length
    upload.save(update_fields=["parts", "offset", "updated_at"])
    if upload.offset == upload.length:
        _upload_complete(upload, origin)
    return upload


def _receivable_check(upload: Upload) -> None:
    if upload.status != UploadStatus.RECEIVING:
        raise Conflict(f"the upload is {upload.status}", code="upload_closed")
    if upload.expires_at <= timezone.now():
        raise Conflict("the upload expired", code="upload_expired")


def digest_lock(sha256: str) -> None:
    """One writer of a digest's object at a time, until this transaction ends.

    PostgreSQL: an advisory lock on the digest. SQLite (the demo) runs one write transaction
    at a time anyway.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 13))", [sha256])


def _upload_complete(upload: Upload, origin: HoldingOrigin) -> None:
    """The last byte arrived: hash the parts (writing them as the blob when it is new) and hold.

    Under the digest lock: the blob row, if it exists and its object is stored, is locked too
    (the collector can't delete it meanwhile) and only hashed against; else the parts are
    written as the blob's object in the same pass. A mismatch deletes the object it wrote (no
    other writer could have written it: the lock) and the parts; the upload is ``failed``.
    """
    digest_lock(upload.sha256)
    blob = Blob.objects.select_for_update().filter(sha256=upload.sha256).first()
    name = blob_storage_name(upload.sha256)
    # A row without its object is what a collector killed between deleting the object and its
    # commit leaves (collect.py deletes both in one transaction): these bytes restore it.
    target = name if blob is None or stored_size(name) is None else None
    parts = [upload.part_name(index) for index in range(upload.parts)]
    digest, size = parts_digest(parts, write_to=target)
    if digest != upload.sha256 or size != upload.length:
        if target is not None:
            names_delete([target])
        upload.status = UploadStatus.FAILED
        upload.save(update_fields=["status", "updated_at"])
        transaction.on_commit(lambda: names_delete(parts))
        return
    if blob is None:
        blob = Blob.objects.create(sha256=upload.sha256, size=size)
    elif blob.orphaned_at is not None:
        blob.orphaned_at = None
        blob.save(update_fields=["orphaned_at"])
    holding, created = BlobHolding.objects.get_or_create(
        user_id=upload.user_id, blob=blob, defaults={"origin": origin, "name": upload.name}
    )
    if not created:
        BlobHolding.objects.filter(pk=holding.pk).update(last_used_at=timezone.now())
    upload.status = UploadStatus.COMPLETE
    upload.blob = blob
    upload.save(update_fields=["status", "blob", "updated_at"])
    transaction.on_commit(lambda: names_delete(parts))


def digest_mismatch_error(upload: Upload) -> ValidationFailed:
    return ValidationFailed(
        f"the {upload.length} bytes received do not have sha256 {upload.sha256}; the upload "
        "failed and nothing was kept",
        code="digest_mismatch",
        fields={"sha256": ["The bytes do not match."]},
    )


def upload_abort(upload: Upload) -> None:
    """Termination (or expiry): a receiving upload is aborted and its parts deleted.

    ``upload`` is locked (``upload_locked``). A finished upload is left as it is.
    """
    if upload.status != UploadStatus.RECEIVING:
        return
    parts = [upload.part_name(index) for index in range(upload.parts)]
    upload.status = UploadStatus.ABORTED
    upload.save(update_fields=["status", "updated_at"])
    transaction.on_commit(lambda: names_delete(parts))
