"""What the host's agent reports about an attempt: accept, reject, started, finished (usage
reports are ``jobs.services.usage``), and the server's own end of it at the cost cap.

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

from agent.protocol import JobCancel, JobFinished, OutputFile
from config.errors import ValidationFailed
from hosts.services import host_job_outcome_record
from jobs.billing import job_settle
from jobs.models import AttemptStatus, Job, JobAttempt, JobOutput, JobStatus, PlacementMode
from jobs.services.dispatch import host_refusal_record, job_offer_next
from jobs.services.outputs import outputs_undeclared_discard
from jobs.services.usage import attempt_final_usage_record
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


BUDGET_REASON = "budget_exhausted: the job's usage reached its cost cap"


def attempt_budget_exhaust(attempt: JobAttempt, *, now: datetime | None = None) -> JobCancel | None:
    """The reported usage costs the whole cap: the server ends the job ``budget_exhausted``.

    The job and the attempt end now (the cap allows nothing more, so nothing the agent reports
    later could be charged); the job settles; the returned ``job.cancel`` tells the agent to stop.
    None when the job had already moved on (finished, lost, cancelled meanwhile).
    """
    now = now or timezone.now()
    try:
        with transaction.atomic():
            job = Job.objects.get(pk=attempt.job_id)
            job_transition(
                job,
                JobStatus.BUDGET_EXHAUSTED,
                BUDGET_REASON,
                expected_from=ACTIVE,
                at_attempt=attempt.number,
            )
            _attempt_update(
                attempt,
                ATTEMPT_ACTIVE,
                status=AttemptStatus.BUDGET_EXHAUSTED,
                reason=BUDGET_REASON,
                finished_at=now,
            )
            host_job_outcome_record(host_id=attempt.host_id, is_finished=True)
    except IllegalTransition:
        return None
    job_settle(job.pk)
    return JobCancel(job_id=attempt.job_id, attempt=attempt.number, reason=BUDGET_REASON)


def attempt_finish(
    attempt: JobAttempt, finished: JobFinished, *, now: datetime | None = None
) -> str | None:
    """The attempt ended on the host: the job takes its final status; outputs are declared.

    The final usage that comes with it is checked and recorded like any report (an impossible
    one is refused and the host flagged: the job still ends, billed from the last good
    counters). Counts a finished job for the host. Settles the job afterwards: the final
    charges, then the rest of the hold back (ledger). Returns why the final usage was refused.
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
        refused = attempt_final_usage_record(attempt, finished["usage"], now)
        _attempt_update(
            attempt,
            ATTEMPT_ACTIVE,
            status=AttemptStatus(target),
            reason=finished["reason"][:500],
            exit_code=finished["exit_code"],
            finished_at=now,
        )
        outputs_declare(attempt, finished["outputs"])
        host_job_outcome_record(host_id=attempt.host_id, is_finished=True)
    job_settle(job.pk)
    return refused


def outputs_declare(attempt: JobAttempt, outputs: list[OutputFile]) -> int:
    """Record the outputs the agent says it will upload; unusable entries are skipped, and
    uploads it did not declare (or declared otherwise) are discarded."""
    declared: dict[str, tuple[int, str]] = {}
    for item in outputs[: settings.JOB_OUTPUTS_MAX_COUNT]:
        try:
            name = path_clean(item["name"], field="name")
        except ValidationFailed:
            continue
        if not 0 <= item["size"] <= settings.JOB_OUTPUT_MAX_BYTES or len(item["sha256"]) != 64:
            continue
        declared[name] = (item["size"], item["sha256"])
    outputs_undeclared_discard(attempt, declared)
    for name, (size, sha256) in declared.items():
        JobOutput.objects.get_or_create(
            attempt=attempt,
            name=name,
            defaults={"job_id": attempt.job_id, "size": size, "sha256": sha256},
        )
    return len(declared)
