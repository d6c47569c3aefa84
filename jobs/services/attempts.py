"""What the host's agent reports about an attempt: accept, reject, started, finished (usage
reports are ``jobs.services.usage``), and the server's own end of it at the cost cap.

The caller (``jobs.agent_messages``) has already checked that the attempt belongs to the
speaking host and classified duplicates and stale attempts. These services still move the job
and the attempt with conditional UPDATEs (``job_transition`` then ``attempt_transition``: job
row first), so a race with the reaper or a cancel raises IllegalTransition and changes nothing
(each runs in an ``atomic`` block: a savepoint in the message's transaction). An attempt that
ends settles its job in the same transaction (``jobs.billing.job_settle``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent.protocol import JobCancel, JobFinished
from hosts.services import host_fault_record, host_job_outcome_record, host_not_ready_mark
from jobs.billing import job_settle
from jobs.models import (
    AttemptStatus,
    Job,
    JobAttempt,
    JobStatus,
    PlacementMode,
    RejectionKind,
)
from jobs.services.dispatch import (
    attempt_lose,
    capacity_offer,
    group_host_exclude,
    host_refusal_record,
    job_offer_next,
)
from jobs.services.outputs import outputs_declare
from jobs.services.usage import attempt_final_usage_record
from jobs.states import ACTIVE, ALLOWED_FROM, IllegalTransition, attempt_transition, job_transition


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.JOB_LEASE_SECONDS)


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
        attempt_transition(
            attempt, AttemptStatus.ACCEPTED, accepted_at=now, lease_expires_at=_lease(now)
        )


_REJECT_KINDS = {
    "refused": RejectionKind.REFUSED,
    "busy": RejectionKind.BUSY,
    "host_fault": RejectionKind.HOST_FAULT,
}


def attempt_reject(
    attempt: JobAttempt, reason: str, code: str = "refused", *, now: datetime | None = None
) -> None:
    """The host said no to the offer. ``code`` says what that means (docs/protocol.md):

    - ``refused`` (its policy, a misfit): remembered against the job, auto placement moves on
      and a chosen host fails the job;
    - ``busy``: never held against the job; it waits (or goes elsewhere) and is offered there
      again after JOB_REOFFER_AFTER_SECONDS;
    - ``host_fault`` (the host can't run jobs now): a host fault, counted on the host; the job
      goes elsewhere first, or waits for a chosen host.
    """
    now = now or timezone.now()
    kind = _REJECT_KINDS[code]
    with transaction.atomic():
        job = Job.objects.get(pk=attempt.job_id)
        host = f"host #{attempt.host_id}"
        if kind == RejectionKind.REFUSED and job.placement == PlacementMode.CHOSEN:
            target, why = JobStatus.FAILED, f"the chosen host refused the job: {reason}"
        elif kind == RejectionKind.REFUSED:
            target, why = JobStatus.QUEUED, f"{host} refused the job: {reason}"
        elif kind == RejectionKind.BUSY:
            target, why = JobStatus.QUEUED, f"{host} was busy; waiting for a free host"
        else:
            target, why = JobStatus.QUEUED, f"{host} could not run jobs just now; waiting"
        host_refusal_record(job, attempt.host_id, reason, kind, now=now)
        job_transition(
            job, target, why, expected_from=[JobStatus.OFFERED], at_attempt=attempt.number
        )
        attempt_transition(attempt, AttemptStatus.REJECTED, reason, finished_at=now)
        if kind == RejectionKind.HOST_FAULT:
            # The agent says it can't run jobs now: not ready until it reports otherwise (its
            # next readiness report), so it is not offered the next job at once.
            host_fault_record(host_id=attempt.host_id, detail=reason, now=now)
            host_not_ready_mark(host_id=attempt.host_id, reason=reason)
            if job.group_id is not None:
                group_host_exclude(job.group_id, attempt.host_id, reason)
        if target == JobStatus.QUEUED:
            job_offer_next(job.pk, now=now)
        else:
            job_settle(job.pk)
        if kind != RejectionKind.BUSY:
            capacity_offer(attempt.host_id, now=now)


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
        attempt_transition(attempt, AttemptStatus(target), lease_expires_at=_lease(now), **extra)


BUDGET_REASON = "budget_exhausted: the job's usage reached its cost cap"


def attempt_budget_exhaust(attempt: JobAttempt, *, now: datetime | None = None) -> JobCancel | None:
    """The reported usage costs the whole cap: the server ends the job ``budget_exhausted``.

    The job and the attempt end now (the cap allows nothing more, so nothing the agent reports
    later could be charged); the job settles in the same transaction; the returned
    ``job.cancel`` tells the agent to stop. None when the job had already moved on (finished,
    lost, cancelled meanwhile).
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
            attempt_transition(
                attempt, AttemptStatus.BUDGET_EXHAUSTED, BUDGET_REASON, finished_at=now
            )
            host_job_outcome_record(host_id=attempt.host_id, is_finished=True)
            job_settle(job.pk)
            capacity_offer(attempt.host_id, now=now)
    except IllegalTransition:
        return None
    return JobCancel(job_id=attempt.job_id, attempt=attempt.number, reason=BUDGET_REASON)


def attempt_finish(
    attempt: JobAttempt, finished: JobFinished, *, now: datetime | None = None
) -> str | None:
    """The attempt ended on the host: the job takes its final status; outputs are declared.

    The final usage that comes with it is checked and recorded like any report (an impossible
    one is refused and the host flagged: the job still ends, billed from the last good
    counters). Counts a finished job for the host. Settles the job afterwards: the final
    charges, then the rest of the hold back (ledger), in the same transaction. Returns why
    the final usage was refused.
    """
    now = now or timezone.now()
    if finished["status"] == "failed" and finished.get("fault") == "host":
        # Not the renter's fault: not charged, the job runs elsewhere (attempt_lose).
        sentence = f"the host could not run the job: {finished['reason'] or 'a host fault'}"
        attempt_lose(
            attempt.pk,
            sentence,
            now=now,
            lease_expired=False,
            fault_detail=finished.get("detail") or finished["reason"],
        )
        return None
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
        attempt_transition(
            attempt,
            AttemptStatus(target),
            finished["reason"],
            exit_code=finished["exit_code"],
            finished_at=now,
            log_bytes=finished.get("log_bytes"),
        )
        outputs_declare(attempt, finished["outputs"])
        host_job_outcome_record(host_id=attempt.host_id, is_finished=True)
        job_settle(job.pk)
        capacity_offer(attempt.host_id, now=now)
    return refused
