"""Output files the agent uploads over HTTP for an attempt it ran."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from config.errors import Conflict, NotFound, TooLarge, ValidationFailed
from jobs.models import AttemptStatus, JobAttempt, JobOutput
from jobs.validation import path_clean

# An attempt that ended without running (refused, expired, lost) has nothing to upload.
_UPLOADABLE = {
    AttemptStatus.ACCEPTED,
    AttemptStatus.PREPARING,
    AttemptStatus.RUNNING,
    AttemptStatus.SUCCEEDED,
    AttemptStatus.FAILED,
    AttemptStatus.CANCELLED,
    AttemptStatus.TIMED_OUT,
    AttemptStatus.BUDGET_EXHAUSTED,
}


def _sha256(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    for block in upload.chunks():
        digest.update(block)
    upload.seek(0)
    return digest.hexdigest()


def output_store(
    *, host_id: int, job_id: int, attempt_number: int, name: str, upload: UploadedFile
) -> JobOutput:
    """Store one output of an attempt this host ran; a repeat of the same file is a no-op.

    Refuses other hosts' attempts (404, revealing nothing), attempts that never ran, names that
    escape the output folder, files over JOB_OUTPUT_MAX_BYTES, totals over
    JOB_OUTPUTS_MAX_BYTES, and content that differs from what job.finished declared.
    """
    attempt = JobAttempt.objects.filter(
        job_id=job_id, number=attempt_number, host_id=host_id
    ).first()
    if attempt is None:
        raise NotFound("no such attempt for this host")
    if attempt.status not in _UPLOADABLE:
        raise Conflict(f"attempt {attempt_number} is {attempt.status}", code="stale_attempt")
    clean = path_clean(name, field="name")
    size = upload.size or 0
    if size > settings.JOB_OUTPUT_MAX_BYTES:
        raise TooLarge(f"{clean} is larger than {settings.JOB_OUTPUT_MAX_BYTES} bytes")
    sha256 = _sha256(upload)
    with transaction.atomic():
        JobAttempt.objects.select_for_update().filter(pk=attempt.pk).first()
        output, _ = JobOutput.objects.get_or_create(
            attempt=attempt, name=clean, defaults={"job_id": job_id, "size": size, "sha256": sha256}
        )
        if output.size != size or output.sha256 != sha256:
            raise ValidationFailed(
                f"{clean} does not match its declared size and sha256", code="output_mismatch"
            )
        if output.uploaded_at is not None:
            return output
        _totals_check(attempt, size)
        output.file.save(clean.replace("/", "_"), upload, save=False)
        output.uploaded_at = timezone.now()
        output.save(update_fields=["file", "uploaded_at"])
    return output


def _totals_check(attempt: JobAttempt, size: int) -> None:
    uploaded = JobOutput.objects.filter(attempt=attempt, uploaded_at__isnull=False)
    total = uploaded.aggregate(total=Sum("size"))["total"] or 0
    if total + size > settings.JOB_OUTPUTS_MAX_BYTES:
        raise TooLarge(f"the outputs add up to more than {settings.JOB_OUTPUTS_MAX_BYTES} bytes")
    if uploaded.count() >= settings.JOB_OUTPUTS_MAX_COUNT:
        raise ValidationFailed(
            f"an attempt has at most {settings.JOB_OUTPUTS_MAX_COUNT} outputs",
            code="too_many_outputs",
        )
