"""Content-addressed blobs (docs/data.md): the bytes of job inputs, code archives and outputs.

A ``Blob`` is one sha256 and its bytes in the store (Django's storage API: the local disk by
default, any S3-compatible store in production), stored once however many users hold it. A
``BlobHolding`` says a user may use a blob: they uploaded its bytes, or a job of theirs produced
it. Knowing a digest is never enough: a holding is only ever made from bytes received and
checked. An ``Upload`` is a resumable upload (tus 1.0) under way: its parts live in the store
until the last byte arrives and the whole is checked against the digest the client stated.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

SHA256_LENGTH = 64


def blob_storage_name(sha256: str) -> str:
    """Where a blob's bytes live in the store: ``blobs/ab/abcdef…``."""
    return f"blobs/{sha256[:2]}/{sha256}"


class Blob(models.Model):
    sha256 = models.CharField(max_length=SHA256_LENGTH, unique=True)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when the last holding went away: the collector deletes the bytes a retention period
    # later unless a holding or a job's reference came back (docs/data.md, "Retention").
    orphaned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"blob {self.sha256[:12]} ({self.size} bytes)"

    @property
    def storage_name(self) -> str:
        return blob_storage_name(self.sha256)


class HoldingOrigin(models.TextChoices):
    UPLOAD = "upload", "uploaded"
    OUTPUT = "output", "a job's output"


class BlobHolding(models.Model):
    """A user may use a blob (in jobs, downloads); its size counts toward their quota."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="blob_holdings"
    )
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="holdings")
    origin = models.CharField(max_length=8, choices=HoldingOrigin.choices)
    # The name the user gave it (the uploaded file's name), for their list.
    name = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # Last used by a job (or created): unreferenced holdings go after BLOB_RETENTION_SECONDS.
    last_used_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "blob"], name="uniq_blob_holding")]

    def __str__(self) -> str:
        return f"{self.blob} held by user {self.user_id}"


class UploadStatus(models.TextChoices):
    RECEIVING = "receiving", "receiving"
    COMPLETE = "complete", "complete"
    FAILED = "failed", "failed"  # the bytes did not match the stated digest
    ABORTED = "aborted", "aborted"  # terminated by the client, or expired


class Upload(models.Model):
    """A resumable upload: ``offset`` bytes of ``length`` received, in parts in the store."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The user who uploads (a renter), or for an output the job's owner it will belong to.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads"
    )
    # Who asked for it: "" for a user's own upload; for an agent's output upload, what the
    # receiving app bound it to ("attempt:<pk>"; the jobs app checks it, blobs never imports it).
    scope = models.CharField(max_length=64, blank=True, default="", db_index=True)
    name = models.CharField(max_length=255, blank=True, default="")
    sha256 = models.CharField(max_length=SHA256_LENGTH)
    length = models.PositiveBigIntegerField()
    offset = models.PositiveBigIntegerField(default=0)
    # How many parts are stored (part i holds the bytes of the i-th accepted PATCH).
    parts = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=12, choices=UploadStatus.choices, default=UploadStatus.RECEIVING
    )
    blob = models.ForeignKey(
        Blob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(offset__lte=models.F("length")), name="upload_offset_in_length"
            )
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="upload_status_expiry")]

    def __str__(self) -> str:
        return f"upload {self.id} ({self.offset}/{self.length})"

    def part_name(self, index: int) -> str:
        return f"uploads/{self.id}/{index:08d}"
