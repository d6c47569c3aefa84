"""Output files the agent uploads over HTTP for an attempt it ran."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
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


def upload_window_is_open(attempt: JobAttempt, *, now: datetime | None = None) -> bool:
    """A live attempt, or one that finished at most JOB_LATE_UPLOAD_SECONDS ago."""
    if attempt.finished_at is None:
        return True
    closes = attempt.finished_at + timedelta(seconds=settings.JOB_LATE_UPLOAD_SECONDS)
    return (now or timezone.now()) <= closes


def upload_window_check(attempt: JobAttempt, *, now: datetime | None = None) -> None:
    """Uploads and log chunks are taken from a live attempt, or up to JOB_LATE_UPLOAD_SECONDS
    after it finished; later ones are 409 ``upload_window_closed``."""
    if not upload_window_is_open(attempt, now=now):
        raise Conflict(
            f"attempt {attempt.number} finished more than {settings.JOB_LATE_UPLOAD_SECONDS} s "
            "ago; nothing more is accepted for it",
            code="upload_window_closed",
        )


def upload_attempt(*, host_id: int, job_id: int, attempt_number: int) -> JobAttempt:
    """The attempt an upload is for, if this host may still upload to it (see output_store)."""
    attempt = JobAttempt.objects.filter(
        job_id=job_id, number=attempt_number, host_id=host_id
    ).first()
    if attempt is None:
        raise NotFound("no such attempt for this host")
    if attempt.status not in _UPLOADABLE:
        raise Conflict(f"attempt {attempt_number} is {attempt.status}", code="stale_attempt")
    upload_window_check(attempt)
    return attempt


def output_store(
    *, host_id: int, job_id: int, attempt_number: int, name: str, upload: UploadedFile
) -> JobOutput:
    """Store one output of an attempt this host ran; a repeat of the same file is a no-op.

    Refuses other hosts' attempts (404, revealing nothing), attempts that never ran, uploads
    more than JOB_LATE_UPLOAD_SECONDS after the attempt finished, names that escape the output
    folder, after job.finished any name it did not declare, files over JOB_OUTPUT_MAX_BYTES, totals
    over JOB_OUTPUTS_MAX_BYTES, and content that differs from what job.finished declared.
    Locks the attempt row while it stores.
    """
    attempt = upload_attempt(host_id=host_id, job_id=job_id, attempt_number=attempt_number)
    clean = path_clean(name, field="name")
    is_live = attempt.finished_at is None
    if not is_live and not JobOutput.objects.filter(attempt=attempt, name=clean).exists():
        raise ValidationFailed(
            f"{clean} was not declared in job.finished for attempt {attempt_number}",
            code="undeclared_output",
            fields={"name": ["Not declared in job.finished."]},
        )
    size = upload.size or 0
    if size > settings.JOB_OUTPUT_MAX_BYTES:
        raise TooLarge(f"{clean} is larger than {settings.JOB_OUTPUT_MAX_BYTES} bytes")
    sha256 = _sha256(upload)
    with transaction.atomic():
        JobAttempt.objects.select_for_update().filter(pk=attempt.pk).first()
        # A live attempt uploads before it declares (the agent sends job.finished last);
        # job.finished then discards what it did not declare (outputs_undeclared_discard).
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


def outputs_undeclared_discard(attempt: JobAttempt, declared: dict[str, tuple[int, str]]) -> int:
    """At job.finished: drop what the attempt uploaded but did not declare as ``(size, sha256)``.

    The renter sees only declared outputs. Runs inside the caller's transaction (which holds
    the attempt); the files go after commit. Returns how many were dropped.
    """
    dropped = [
        output
        for output in JobOutput.objects.filter(attempt=attempt)
        if declared.get(output.name) != (output.size, output.sha256)
    ]
    names = [output.file.name for output in dropped if output.file]
    JobOutput.objects.filter(pk__in=[output.pk for output in dropped]).delete()
    if names:
        transaction.on_commit(lambda: _files_delete(names))
    return len(dropped)


def _files_delete(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)
