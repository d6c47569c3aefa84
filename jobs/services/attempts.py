"""What the host's agent reports about an attempt: accept, reject, started, usage, finished.

The caller (``jobs.agent_messages``) has already checked that the attempt belongs to the
speaking host and classified duplicates and stale attempts. These services still move the job
with conditional UPDATEs (job row first, then the attempt), so a race with the reaper or a
cancel raises IllegalTransition and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent.protocol import JobFinished, OutputFile, Usage
from config.errors import ValidationFailed
from hosts.services import host_job_outcome_record
from jobs import events
from jobs.models import AttemptStatus, Job, JobAttempt, JobOutput, JobStatus, PlacementMode
from jobs.services.dispatch import host_refusal_record, job_offer_next
from jobs.services.holds import job_settle
from jobs.states import ACTIVE, ALLOWED_FROM, ATTEMPT_ACTIVE, IllegalTransition, job_transition
from jobs.validation import path_clean


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.JOB_LEASE_SECONDS)


def _attempt_update(attempt: JobAttempt, sources: frozenset[Any] | set[Any], **values: Any) -> None:
    """Conditional UPDATE of the attempt; under the job's row lock it can only fail on a bug."""
    rows = JobAttempt.objects.filter(pk=attempt.pk, status__in=sources).update(**values)
    if rows != 1:
        raise IllegalTransition(f"attempt {attempt.number} of job {attempt.job_id} moved on")


def attempt_accept(attempt: JobAttempt, *, now: datetime | None = None) -> None:
    """The host took the offer: the job is accepted and the attempt leased."""
    now = now or timezone.now()
    with transaction.atomic():
        job = Job.objects.get(pk=attempt.job_id)
        job_transition(
            job,
            JobStatus.ACCEPTED,
            f"accepted by host #{attempt.host_id}",
            expected_from=[JobStatus.OFFERED],
            at_attempt=attempt.number,
        )
        _attempt_update(
            attempt,
            {AttemptStatus.OFFERED},
            status=AttemptStatus.ACCEPTED,
            accepted_at=now,
            lease_expires_at=_lease(now),
        )


def attempt_reject(attempt: JobAttempt, reason: str, *, now: datetime | None = None) -> None:
    """The host refused the offer: auto placement moves on; a chosen host fails the job."""
    now = now or timezone.now()
    with transaction.atomic():
        job = Job.objects.get(pk=attempt.job_id)
        if job.placement == PlacementMode.AUTO:
            host_refusal_record(job, attempt.host_id, reason)
            target, why = JobStatus.QUEUED, f"host #{attempt.host_id} refused the job: {reason}"
        else:
            target, why = JobStatus.FAILED, f"the chosen host refused the job: {reason}"
        job_transition(
            job, target, why, expected_from=[JobStatus.OFFERED], at_attempt=attempt.number
        )
        _attempt_update(
            attempt,
            {AttemptStatus.OFFERED},
            status=AttemptStatus.REJECTED,
            reason=reason[:500],
            finished_at=now,
        )
    if target == JobStatus.QUEUED:
        job_offer_next(job.pk, now=now)
    else:
        job_settle(job.pk)


_PHASES = {"preparing": JobStatus.PREPARING, "running": JobStatus.RUNNING}
_PHASE_REASONS = {"preparing": "installing requirements", "running": "running"}


def attempt_start(attempt: JobAttempt, phase: str, *, now: datetime | None = None) -> None:
    """The agent entered a phase (preparing the environment, running the script)."""
    now = now or timezone.now()
    target = _PHASES[phase]
    extra: dict[str, Any] = {"started_at": now} if target == JobStatus.RUNNING else {}
    with transaction.atomic():
        job = Job.objects.get(pk=attempt.job_id)
        job_transition(
            job,
            target,
            _PHASE_REASONS[phase],
            expected_from=ALLOWED_FROM[target],
            at_attempt=attempt.number,
            **extra,
        )
        _attempt_update(
            attempt,
            {AttemptStatus(s) for s in ALLOWED_FROM[target]},
            status=AttemptStatus(target),
            lease_expires_at=_lease(now),
            **extra,
        )


def attempt_usage_record(attempt: JobAttempt, usage: Usage) -> bool:
    """Keep the newest cumulative usage report (by seq); older or repeated ones change nothing.

    Recorded only: charging from usage is the metering issue's work.
    """
    rows = JobAttempt.objects.filter(
        pk=attempt.pk, status__in=ATTEMPT_ACTIVE, usage_seq__lt=usage["seq"]
    ).update(usage_seq=usage["seq"], usage=dict(usage))
    if rows:
        cost = Job.objects.filter(pk=attempt.job_id).values_list("cost_micros", flat=True).first()
        event = {"type": "job.usage", "job_id": attempt.job_id, "attempt": attempt.number}
        event.update({**usage, "cost_micros": cost or 0})
        transaction.on_commit(lambda: events.job_event_push(attempt.job_id, event))
    return rows == 1


def attempt_finish(
    attempt: JobAttempt, finished: JobFinished, *, now: datetime | None = None
) -> None:
    """The attempt ended on the host: the job takes its final status; outputs are declared.

    Counts a finished job for the host. Settles the job's hold afterwards (ledger).
    """
    now = now or timezone.now()
    target = JobStatus(finished["status"])
    with transaction.atomic():
        job = Job.objects.get(pk=attempt.job_id)
        job_transition(
            job,
            target,
            finished["reason"] or str(target),
            expected_from=ACTIVE,
            at_attempt=attempt.number,
            exit_code=finished["exit_code"],
        )
        _attempt_update(
            attempt,
            ATTEMPT_ACTIVE,
            status=AttemptStatus(target),
            reason=finished["reason"][:500],
            exit_code=finished["exit_code"],
            finished_at=now,
            usage=dict(finished["usage"]),
            usage_seq=max(attempt.usage_seq, finished["usage"]["seq"]),
        )
        outputs_declare(attempt, finished["outputs"])
        host_job_outcome_record(host_id=attempt.host_id, is_finished=True)
    job_settle(job.pk)


def outputs_declare(attempt: JobAttempt, outputs: list[OutputFile]) -> int:
    """Record the outputs the agent says it will upload; unusable entries are skipped."""
    declared = 0
    for item in outputs[: settings.JOB_OUTPUTS_MAX_COUNT]:
        try:
            name = path_clean(item["name"], field="name")
        except ValidationFailed:
            continue
        if not 0 <= item["size"] <= settings.JOB_OUTPUT_MAX_BYTES or len(item["sha256"]) != 64:
            continue
        JobOutput.objects.get_or_create(
            attempt=attempt,
            name=name,
            defaults={"job_id": attempt.job_id, "size": item["size"], "sha256": item["sha256"]},
        )
        declared += 1
    return declared
