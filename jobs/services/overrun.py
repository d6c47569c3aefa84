"""The server's own end of an attempt its host did not stop: past a cancel, or past its timeout.

What the server decided, it enforces (docs/metering.md). After a cancel (``cancel_requested_at``)
or past ``started_at + timeout_seconds``, only ``JOB_STOP_GRACE_SECONDS`` more wall time is
billable (``jobs.billing.billable_window_ms``), whatever the host reports. A host that still
holds the attempt ``JOB_LEASE_SECONDS`` after that (time to upload its outputs and report) is
ignoring the server: the reaper ends the attempt — ``cancelled`` or ``timed_out``, through the
transition functions of ``jobs.states`` —, flags the host with the reason, settles the job in
the same transaction and tells the agent to stop.

An attempt that never starts running (accepted or preparing, heartbeating) has no timeout of
its own, and would hold the renter's cap for ever: one not running ``JOB_PREPARE_MAX_SECONDS``
+ a lease after it was accepted is lost (``dispatch.attempt_lose``: the host's loss, requeued
or failed, nothing billed), the host flagged ``start_overdue`` and told the attempt is stale.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.utils import timezone

from agent.protocol import STALE_ATTEMPT_REASON_PREFIX, JobCancel
from hosts.services import host_job_outcome_record, host_report_flag
from jobs import agent_link
from jobs.billing import job_settle
from jobs.models import AttemptStatus, Job, JobAttempt, JobStatus
from jobs.services.dispatch import attempt_lose
from jobs.states import ACTIVE, ATTEMPT_ACTIVE, attempt_transition, job_transition

_BATCH = 100
CANCEL_IGNORED = "cancel_ignored"
TIMEOUT_IGNORED = "timeout_ignored"
START_OVERDUE = "start_overdue"


def _late() -> timedelta:
    """How long past a cancel or a timeout the server waits before it ends the attempt."""
    return timedelta(seconds=settings.JOB_STOP_GRACE_SECONDS + settings.JOB_LEASE_SECONDS)


def _prepare_cutoff(now: datetime) -> datetime:
    """Attempts accepted before this and still not running are overdue."""
    return now - timedelta(seconds=settings.JOB_PREPARE_MAX_SECONDS + settings.JOB_LEASE_SECONDS)


def attempts_overrun(now: datetime) -> list[int]:
    """Active attempts still held past their cancel or their timeout (+ the grace and a lease),
    or never running ``JOB_PREPARE_MAX_SECONDS`` (+ a lease) after they were accepted, a batch
    of them (``attempt_overrun_end``)."""
    cutoff = now - _late()
    active = JobAttempt.objects.filter(status__in=ATTEMPT_ACTIVE)
    held = Q(job__cancel_requested_at__lt=cutoff) | Q(
        started_at__isnull=True, accepted_at__lt=_prepare_cutoff(now)
    )
    if connection.vendor != "postgresql":
        # SQLite (the embedded demo) can't multiply a duration in SQL: the few running
        # attempts there are checked here instead.
        timed_out = [
            pk
            for pk, started_at, timeout in active.filter(started_at__lt=cutoff).values_list(
                "pk", "started_at", "job__timeout_seconds"
            )
            if started_at is not None and started_at + timedelta(seconds=timeout) < cutoff
        ]
        due = active.filter(held | Q(pk__in=timed_out)).order_by("pk")
        return list(due.values_list("pk", flat=True)[:_BATCH])
    timeout_at = ExpressionWrapper(
        F("started_at")
        + ExpressionWrapper(
            F("job__timeout_seconds") * Value(timedelta(seconds=1)), output_field=DurationField()
        ),
        output_field=DateTimeField(),
    )
    due = (
        active.annotate(timeout_at=timeout_at)
        .filter(held | Q(started_at__isnull=False, timeout_at__lt=cutoff))
        .order_by("pk")
    )
    return list(due.values_list("pk", flat=True)[:_BATCH])


def _overrun(attempt: JobAttempt, job: Job, now: datetime) -> tuple[JobStatus, str, str] | None:
    """(the end, why, the flag's reason) when the attempt is past its cancel or timeout."""
    cutoff = now - _late()
    if job.cancel_requested_at is not None and job.cancel_requested_at < cutoff:
        return (
            JobStatus.CANCELLED,
            "cancelled by the owner; the host did not stop the job, the server ended it",
            CANCEL_IGNORED,
        )
    started = attempt.started_at
    if started is not None and started + timedelta(seconds=job.timeout_seconds) < cutoff:
        return (
            JobStatus.TIMED_OUT,
            f"timed out after {job.timeout_seconds} s; the host did not stop the job, "
            "the server ended it",
            TIMEOUT_IGNORED,
        )
    return None


def _start_overdue(attempt: JobAttempt, now: datetime) -> bool:
    return (
        attempt.started_at is None
        and attempt.accepted_at is not None
        and attempt.accepted_at < _prepare_cutoff(now)
    )


def _start_overdue_end(attempt: JobAttempt, now: datetime) -> bool:
    """Lose an attempt that never started running in time (nothing of it was billable)."""
    reason = (
        f"not running {settings.JOB_PREPARE_MAX_SECONDS} s after it was accepted; "
        "the server ended it"
    )
    if not attempt_lose(attempt.pk, reason, now=now, lease_expired=False):
        return False
    host_report_flag(host_id=attempt.host_id, reason=START_OVERDUE)
    host_id = attempt.host_id
    cancel = JobCancel(
        job_id=attempt.job_id,
        attempt=attempt.number,
        reason=f"{STALE_ATTEMPT_REASON_PREFIX}: {reason}",
    )
    transaction.on_commit(lambda: agent_link.agent_send(host_id, "job.cancel", cancel))
    return True


def attempt_overrun_end(attempt_id: int, *, now: datetime | None = None) -> bool:
    """End an attempt its host kept past a cancel or its timeout: the job and the attempt go to
    ``cancelled`` / ``timed_out``, the host is flagged, the job settles (billed up to the
    deadline, not beyond), all in the caller's transaction; after the commit the agent is told
    to stop. An attempt never started in time is lost instead (``_start_overdue_end``). False
    when the attempt is not (or no longer) overrunning."""
    now = now or timezone.now()
    with transaction.atomic():
        attempt = JobAttempt.objects.filter(pk=attempt_id, status__in=ATTEMPT_ACTIVE).first()
        if attempt is None:
            return False
        if _start_overdue(attempt, now) and (
            not Job.objects.filter(pk=attempt.job_id, cancel_requested_at__isnull=False).exists()
        ):
            return _start_overdue_end(attempt, now)
        job = (
            Job.objects.select_for_update()
            .filter(pk=attempt.job_id, status__in=ACTIVE, attempt=attempt.number)
            .first()
        )
        if job is None:
            return False
        verdict = _overrun(attempt, job, now)
        if verdict is None:
            return False
        target, reason, flag = verdict
        job_transition(job, target, reason, expected_from=ACTIVE, at_attempt=attempt.number)
        attempt_transition(
            attempt, AttemptStatus(target), reason, expected_from=ATTEMPT_ACTIVE, finished_at=now
        )
        host_job_outcome_record(host_id=attempt.host_id, is_finished=True)
        host_report_flag(host_id=attempt.host_id, reason=flag)
        job_settle(job.pk)
        host_id = attempt.host_id
        cancel = JobCancel(job_id=job.pk, attempt=attempt.number, reason=reason)
        transaction.on_commit(lambda: agent_link.agent_send(host_id, "job.cancel", cancel))
    return True
