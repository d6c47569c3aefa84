"""The server's own end of an attempt its host did not stop: past a cancel, or past its timeout.

What the server decided, it enforces (docs/metering.md). After a cancel (``cancel_requested_at``)
or past ``started_at + timeout_seconds``, only ``JOB_STOP_GRACE_SECONDS`` more wall time is
billable (``jobs.billing.billable_window_ms``), whatever the host reports. A host that still
holds the attempt ``JOB_LEASE_SECONDS`` after that (time to upload its outputs and report) is
ignoring the server: the reaper ends the attempt — ``cancelled`` or ``timed_out``, through the
transition functions of ``jobs.states`` —, flags the host with the reason, settles the job in
the same transaction and tells the agent to stop.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.utils import timezone

from agent.protocol import JobCancel
from hosts.services import host_job_outcome_record, host_report_flag
from jobs import agent_link
from jobs.billing import job_settle
from jobs.models import AttemptStatus, Job, JobAttempt, JobStatus
from jobs.states import ACTIVE, ATTEMPT_ACTIVE, attempt_transition, job_transition

_BATCH = 100
CANCEL_IGNORED = "cancel_ignored"
TIMEOUT_IGNORED = "timeout_ignored"


def _late() -> timedelta:
    """How long past a cancel or a timeout the server waits before it ends the attempt."""
    return timedelta(seconds=settings.JOB_STOP_GRACE_SECONDS + settings.JOB_LEASE_SECONDS)


def attempts_overrun(now: datetime) -> list[int]:
    """Active attempts still held past their cancel or their timeout (+ the grace and a lease),
    a batch of them (``attempt_overrun_end``)."""
    cutoff = now - _late()
    timeout_at = ExpressionWrapper(
        F("started_at")
        + ExpressionWrapper(
            F("job__timeout_seconds") * Value(timedelta(seconds=1)), output_field=DurationField()
        ),
        output_field=DateTimeField(),
    )
    due = (
        JobAttempt.objects.filter(status__in=ATTEMPT_ACTIVE)
        .annotate(timeout_at=timeout_at)
        .filter(
            Q(job__cancel_requested_at__lt=cutoff)
            | Q(started_at__isnull=False, timeout_at__lt=cutoff)
        )
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


def attempt_overrun_end(attempt_id: int, *, now: datetime | None = None) -> bool:
    """End an attempt its host kept past a cancel or its timeout: the job and the attempt go to
    ``cancelled`` / ``timed_out``, the host is flagged, the job settles (billed up to the
    deadline, not beyond), all in the caller's transaction; after the commit the agent is told
    to stop. False when the attempt is not (or no longer) overrunning."""
    now = now or timezone.now()
    with transaction.atomic():
        attempt = JobAttempt.objects.filter(pk=attempt_id, status__in=ATTEMPT_ACTIVE).first()
        if attempt is None:
            return False
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
