"""Output files the agent uploads with tus for an attempt it ran (docs/data.md, "Outputs"):
the one place for output rules. The bytes go through the blobs app's upload engine; an output's
bytes are a blob its job's owner holds."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Sum
from django.utils import timezone

from agent.protocol import OutputFile, pool_object_key
from blobs.models import HoldingOrigin, Upload, UploadStatus
from blobs.services.holdings import holdings_of_outputs_drop
from blobs.services.uploads import sha256_check, upload_abort, upload_create, upload_receive
from blobs.store import Readable
from config.errors import Conflict, NotFound, TooLarge, ValidationFailed
from jobs.audit_models import AuditKind
from jobs.models import (
    AttemptStatus,
    Job,
    JobAttempt,
    JobOutput,
    OutputLocation,
    ReleaseStatus,
)
from jobs.services.audit import audit_append
from jobs.services.releases import output_is_gated, release_complete
from jobs.validation import path_clean

ATTEMPT_SCOPE = "attempt:"
RELEASE_SCOPE = "release:"

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
    """The attempt an upload is for, if this host may still upload to it (output_upload_create)."""
    attempt = JobAttempt.objects.filter(
        job_id=job_id, number=attempt_number, host_id=host_id
    ).first()
    if attempt is None:
        raise NotFound("no such attempt for this host")
    if attempt.status not in _UPLOADABLE:
        raise Conflict(f"attempt {attempt_number} is {attempt.status}", code="stale_attempt")
    if outputs_kept_on_pool(attempt.job):
        # The pool keeps its outputs: none of their bytes may reach the central store except
        # through a release (output_release_upload_create).
        raise Conflict(
            f"job {job_id}'s pool keeps its outputs on its own store; nothing is uploaded here",
            code="output_kept_on_pool_store",
        )
    upload_window_check(attempt)
    return attempt


def outputs_kept_on_pool(job: Job) -> bool:
    """The job runs in a pool that keeps outputs on its own store (docs/pools.md)."""
    return job.pool_id is not None and bool(job.pool and job.pool.pool_output_store)


def output_upload_create(
    *, host_id: int, job_id: int, attempt_number: int, name: str, sha256: str, length: int
) -> Upload:
    """A tus upload of one output of an attempt this host ran (the agent's POST).

    Refuses other hosts' attempts (404, revealing nothing), attempts that never ran, uploads
    more than JOB_LATE_UPLOAD_SECONDS after the attempt finished, names that escape the output
    folder, after job.finished any name it did not declare or with another size or sha256, files
    over JOB_OUTPUT_MAX_BYTES and totals over JOB_OUTPUTS_MAX_BYTES. The upload is for the job's
    owner to hold; when they hold these bytes already it is complete at once. Locks the
    attempt row.
    """
    attempt = upload_attempt(host_id=host_id, job_id=job_id, attempt_number=attempt_number)
    clean = path_clean(name, field="name")
    sha256_check(sha256)
    if length > settings.JOB_OUTPUT_MAX_BYTES:
        raise TooLarge(f"{clean} is larger than {settings.JOB_OUTPUT_MAX_BYTES} bytes")
    JobAttempt.objects.select_for_update().filter(pk=attempt.pk).first()
    output = _output_declared(attempt, clean, size=length, sha256=sha256)
    if output.uploaded_at is None:
        _totals_check(attempt, length)
    upload = upload_create(
        user_id=attempt.job.owner_id,
        sha256=sha256,
        length=length,
        name=clean,
        scope=_scope(attempt),
        origin=HoldingOrigin.OUTPUT,
    )
    if upload.status == UploadStatus.COMPLETE:
        _output_attach(attempt, upload)
    return upload


def _scope(attempt: JobAttempt) -> str:
    return f"{ATTEMPT_SCOPE}{attempt.pk}"


def _output_declared(attempt: JobAttempt, name: str, *, size: int, sha256: str) -> JobOutput:
    """The output row: after job.finished the declared one, which must match; before it (the
    agent uploads, then declares) one made now, which job.finished keeps only if declared."""
    if attempt.finished_at is not None:
        output = JobOutput.objects.filter(attempt=attempt, name=name).first()
        if output is None:
            raise ValidationFailed(
                f"{name} was not declared in job.finished for attempt {attempt.number}",
                code="undeclared_output",
                fields={"name": ["Not declared in job.finished."]},
            )
    else:
        output, _ = JobOutput.objects.get_or_create(
            attempt=attempt,
            name=name,
            defaults={"job_id": attempt.job_id, "size": size, "sha256": sha256},
        )
    if output.size != size or output.sha256 != sha256:
        raise ValidationFailed(
            f"{name} does not match its declared size and sha256", code="output_mismatch"
        )
    return output


def output_upload_locked(*, host_id: int, upload_id: uuid.UUID) -> tuple[Upload, JobAttempt]:
    """An output upload of this host's attempt, the upload's then the attempt's row locked
    (404 for any other host's), while the attempt may still upload."""
    upload = (
        Upload.objects.select_for_update()
        .filter(pk=upload_id, scope__startswith=ATTEMPT_SCOPE)
        .first()
    )
    attempt = None
    if upload is not None:
        attempt_id = upload.scope.removeprefix(ATTEMPT_SCOPE)
        attempt = (
            JobAttempt.objects.select_for_update()
            .filter(pk=int(attempt_id) if attempt_id.isdigit() else 0, host_id=host_id)
            .select_related("job")
            .first()
        )
    if upload is None or attempt is None:
        raise NotFound("no such upload")
    if attempt.status not in _UPLOADABLE:
        raise Conflict(f"attempt {attempt.number} is {attempt.status}", code="stale_attempt")
    upload_window_check(attempt)
    return upload, attempt


def output_upload_receive(
    *, host_id: int, upload_id: uuid.UUID, offset: int, body: Readable, length: int
) -> Upload:
    """One PATCH of an output upload (``blobs.services.uploads.upload_receive``); on the last
    byte the output gets its blob. Refused as ``output_upload_create`` refuses, at every PATCH
    (the attempt may have finished meanwhile without declaring it). Locks the upload, then the
    attempt (a release's upload: the upload, then the output)."""
    if _is_release_upload(upload_id):
        return _release_upload_receive(
            host_id=host_id, upload_id=upload_id, offset=offset, body=body, length=length
        )
    upload, attempt = output_upload_locked(host_id=host_id, upload_id=upload_id)
    _output_declared(attempt, upload.name, size=upload.length, sha256=upload.sha256)
    upload = upload_receive(
        upload, offset=offset, body=body, length=length, origin=HoldingOrigin.OUTPUT
    )
    if upload.status == UploadStatus.COMPLETE:
        _output_attach(attempt, upload)
    return upload


def output_upload_abort(*, host_id: int, upload_id: uuid.UUID) -> None:
    if _is_release_upload(upload_id):
        upload, _ = _release_upload_locked(host_id=host_id, upload_id=upload_id)
    else:
        upload, _ = output_upload_locked(host_id=host_id, upload_id=upload_id)
    upload_abort(upload)


def output_upload_of(*, host_id: int, upload_id: uuid.UUID) -> Upload:
    """For HEAD: the upload if it is an output of this host's attempt, or a release this host
    was asked to carry."""
    upload = Upload.objects.filter(pk=upload_id).first()
    if upload is not None and upload.scope.startswith(ATTEMPT_SCOPE):
        attempt_id = upload.scope.removeprefix(ATTEMPT_SCOPE)
        if (
            attempt_id.isdigit()
            and JobAttempt.objects.filter(pk=int(attempt_id), host_id=host_id).exists()
        ):
            return upload
    if upload is not None and upload.scope.startswith(RELEASE_SCOPE):
        output_id = upload.scope.removeprefix(RELEASE_SCOPE)
        if (
            output_id.isdigit()
            and JobOutput.objects.filter(pk=int(output_id), release_host_id=host_id).exists()
        ):
            return upload
    raise NotFound("no such upload")


# --- releases: an approved output's bytes from a pool host ------------------------------------


def _is_release_upload(upload_id: uuid.UUID) -> bool:
    return Upload.objects.filter(pk=upload_id, scope__startswith=RELEASE_SCOPE).exists()


def _release_output(host_id: int, output_id: int, *, lock: bool) -> JobOutput:
    """The approved output this host was asked to carry (404 for any other host, any other
    state: a release is carried only while approved, only by the host it was last sent to,
    while that host is still in the pool)."""
    found = JobOutput.objects.filter(
        pk=output_id,
        location=OutputLocation.POOL,
        release_status=ReleaseStatus.APPROVED,
        release_host_id=host_id,
        # a host that left the pool since carries none of its outputs any more
        release_host__organisation_id=F("job__pool_id"),
    )
    if lock:
        found = found.select_for_update(of=("self",))
    output = found.select_related("job", "attempt").first()
    if output is None:
        raise NotFound("no such release for this host")
    return output


def output_release_upload_create(
    *, host_id: int, release_id: int, name: str, sha256: str, length: int
) -> Upload:
    """A tus upload of an approved output's bytes by the pool host it was sent to
    (``output.release``): the job's owner will hold them. The length and digest are the ones
    the job reported at job.finished, never the agent's: other bytes fail the upload's
    completion (``digest_mismatch``) and the output stays approved, undownloadable. When the
    owner holds these bytes already it is released at once. Locks the output row."""
    output = _release_output(host_id, release_id, lock=True)
    if (name, sha256, length) != (output.name, output.sha256, output.size):
        raise ValidationFailed(
            f"the release of {output.name} is {output.size} bytes with sha256 {output.sha256}",
            code="output_mismatch",
        )
    upload = upload_create(
        user_id=output.job.owner_id,
        sha256=output.sha256,
        length=output.size,
        name=output.name,
        scope=f"{RELEASE_SCOPE}{output.pk}",
        origin=HoldingOrigin.OUTPUT,
    )
    if upload.status == UploadStatus.COMPLETE:
        _release_attach(output, upload, host_id=host_id)
    return upload


def _release_upload_locked(*, host_id: int, upload_id: uuid.UUID) -> tuple[Upload, JobOutput]:
    upload = (
        Upload.objects.select_for_update()
        .filter(pk=upload_id, scope__startswith=RELEASE_SCOPE)
        .first()
    )
    output_id = upload.scope.removeprefix(RELEASE_SCOPE) if upload is not None else ""
    if upload is None or not output_id.isdigit():
        raise NotFound("no such upload")
    return upload, _release_output(host_id, int(output_id), lock=True)


def _release_upload_receive(
    *, host_id: int, upload_id: uuid.UUID, offset: int, body: Readable, length: int
) -> Upload:
    upload, output = _release_upload_locked(host_id=host_id, upload_id=upload_id)
    upload = upload_receive(
        upload, offset=offset, body=body, length=length, origin=HoldingOrigin.OUTPUT
    )
    if upload.status == UploadStatus.COMPLETE:
        _release_attach(output, upload, host_id=host_id)
    return upload


def _release_attach(output: JobOutput, upload: Upload, *, host_id: int) -> None:
    assert upload.blob_id is not None
    release_complete(output, host_id=host_id, blob_id=upload.blob_id, now=timezone.now())


# --- the renter's download ------------------------------------------------------------------


def output_download_check(output: JobOutput) -> None:
    """An output on the pool's store, or of a pool with the airlock, is downloadable only once
    released (409 ``output_not_released``, naming where its release stands)."""
    if output_is_gated(output) and output.release_status != ReleaseStatus.RELEASED:
        why = {
            ReleaseStatus.NONE: "ask for its release first (POST …/release/)",
            ReleaseStatus.REQUESTED: "its release waits for a data steward of the pool",
            ReleaseStatus.APPROVED: "its release was approved; a pool host is carrying it over",
            ReleaseStatus.REFUSED: "its release was refused; it stays on the pool's side",
        }[ReleaseStatus(output.release_status)]
        where = (
            "kept on the pool's store"
            if output.location == OutputLocation.POOL
            else ("behind the pool's airlock")
        )
        raise Conflict(
            f"{output.name} is {where} and not released "
            f"(release status {output.release_status}): {why}",
            code="output_not_released",
            fields={"release_status": [str(output.release_status)]},
        )


def _output_attach(attempt: JobAttempt, upload: Upload) -> None:
    """The upload completed: its output has its blob (the owner holds it: the engine made the
    holding)."""
    updated = JobOutput.objects.filter(attempt=attempt, name=upload.name, blob=None).update(
        blob=upload.blob, uploaded_at=timezone.now()
    )
    if not updated and not JobOutput.objects.filter(attempt=attempt, name=upload.name).exists():
        assert upload.blob_id is not None
        holdings_of_outputs_drop(user_id=upload.user_id, blob_ids={upload.blob_id})


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
    the attempt); the owner's holdings that only those outputs gave go (the collector deletes
    the bytes). Returns how many were dropped.
    """
    dropped = [
        output
        for output in JobOutput.objects.filter(attempt=attempt)
        if declared.get(output.name) != (output.size, output.sha256)
    ]
    JobOutput.objects.filter(pk__in=[output.pk for output in dropped]).delete()
    blob_ids = {output.blob_id for output in dropped if output.blob_id is not None}
    kept = JobOutput.objects.filter(job__owner_id=attempt.job.owner_id, blob_id__in=blob_ids)
    holdings_of_outputs_drop(
        user_id=attempt.job.owner_id,
        blob_ids=blob_ids - set(kept.values_list("blob_id", flat=True)),
    )
    return len(dropped)


def outputs_declare(attempt: JobAttempt, outputs: list[OutputFile]) -> int:
    """At job.finished: record the outputs the agent says it uploaded (or, for a job whose pool
    keeps outputs, wrote to the pool's store); unusable entries are skipped, and uploads it did
    not declare (or declared otherwise) are discarded. An entry whose ``location`` is not the
    one the pool's settings say is skipped too (the bytes are not where the server looks). Each
    output kept on the pool's store is appended to the pool's audit trail (``output.kept``)."""
    job = attempt.job
    kept = outputs_kept_on_pool(job)
    wanted = OutputLocation.POOL if kept else OutputLocation.CENTRAL
    declared: dict[str, tuple[int, str]] = {}
    for item in outputs[: settings.JOB_OUTPUTS_MAX_COUNT]:
        try:
            name = path_clean(item["name"], field="name")
        except ValidationFailed:
            continue
        if not 0 <= item["size"] <= settings.JOB_OUTPUT_MAX_BYTES or len(item["sha256"]) != 64:
            continue
        if item.get("location", OutputLocation.CENTRAL) != wanted:
            continue
        declared[name] = (item["size"], item["sha256"])
    outputs_undeclared_discard(attempt, declared)
    for name, (size, sha256) in declared.items():
        defaults: dict[str, object] = {"job_id": attempt.job_id, "size": size, "sha256": sha256}
        if kept:
            assert job.pool is not None
            prefix = str(job.pool.pool_output_store.get("prefix", ""))
            defaults |= {
                "location": OutputLocation.POOL,
                "store_key": pool_object_key(prefix, job.pk, attempt.number, name),
                "uploaded_at": timezone.now(),
            }
        output, created = JobOutput.objects.get_or_create(
            attempt=attempt, name=name, defaults=defaults
        )
        if kept and created:
            _output_kept_audit(attempt, output)
    return len(declared)


def _output_kept_audit(attempt: JobAttempt, output: JobOutput) -> None:
    assert attempt.job.pool_id is not None
    audit_append(
        organisation_id=attempt.job.pool_id,
        kind=AuditKind.OUTPUT_KEPT,
        job_id=attempt.job_id,
        host_id=attempt.host_id,
        detail={
            "output_id": output.pk,
            "name": output.name,
            "attempt": attempt.number,
            "size": output.size,
            "sha256": output.sha256,
            "key": output.store_key,
        },
    )
