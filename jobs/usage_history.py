"""The usage history of a job: stored samples per attempt and the status timeline (reads).

Every accepted usage report is a ``UsageReport`` row (jobs/services/usage.py), so the history
is at the report resolution (an agent reports every few seconds). A long job has thousands;
each attempt is served at most ``USAGE_HISTORY_MAX_POINTS`` of them, evenly spread (every
k-th by seq, picked in the database), always with its first and its last. The timeline comes
from what is stored: the job's and its attempts' timestamps, statuses and reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber

from accounts.models import User
from config.errors import NotFound
from jobs.metering import Counters, Reservation, cost_total
from jobs.models import AttemptStatus, Job, JobAttempt, UsageReport

USAGE_HISTORY_MAX_POINTS = 500
_ENDED_ATTEMPT = {
    AttemptStatus.REJECTED,
    AttemptStatus.EXPIRED,
    AttemptStatus.LOST,
}


@dataclass(frozen=True)
class UsageSample:
    at: datetime
    cpu_seconds: Decimal
    wall_seconds: Decimal
    memory_current_mb: int
    memory_peak_mb: int
    cost_micros: int


@dataclass(frozen=True)
class AttemptUsage:
    attempt: int
    host_id: int
    host_name: str
    status: str
    report_count: int
    samples: list[UsageSample]


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    status: str
    attempt: int | None
    reason: str


@dataclass(frozen=True)
class UsageHistory:
    job_id: int
    attempts: list[AttemptUsage]
    timeline: list[TimelineEvent]


def job_usage_history(user: User, job_id: int) -> UsageHistory:
    """The job's history for its owner (every attempt), or for a host owner (the attempts on
    their hosts only); NotFound for anyone else, as for every job endpoint."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise NotFound("no such job")
    attempts = job.attempts.select_related("host").order_by("number")
    if job.owner_id != user.pk:
        attempts = attempts.filter(host__owner=user)
        if not attempts.exists():
            raise NotFound("no such job")
    shown = list(attempts)
    return UsageHistory(
        job_id=job.pk,
        attempts=[_attempt_usage(job, attempt) for attempt in shown if attempt.accepted_at],
        timeline=_timeline(job, shown, is_owner=job.owner_id == user.pk),
    )


def _attempt_usage(job: Job, attempt: JobAttempt) -> AttemptUsage:
    reports = UsageReport.objects.filter(attempt=attempt)
    count = reports.count()
    stride = max(1, -(-count // USAGE_HISTORY_MAX_POINTS))
    numbered = reports.annotate(
        n=Window(RowNumber(), order_by=F("seq").asc()),
    )
    if stride > 1:
        # Every stride-th report counted from the last, and the first: at most the maximum.
        numbered = numbered.filter(Q(n=1) | Q(n__in=range(count, 0, -stride)))
    rows = numbered.order_by("seq").values_list(
        "received_at", "cpu_ms", "wall_ms", "memory_current_mb", "memory_peak_mb"
    )
    reservation = Reservation(cpus=Decimal(job.cpus), memory_mb=job.memory_mb, gpus=job.gpus)
    samples = [
        UsageSample(
            at=at,
            cpu_seconds=Decimal(cpu_ms) / 1000,
            wall_seconds=Decimal(wall_ms) / 1000,
            memory_current_mb=current,
            memory_peak_mb=peak,
            cost_micros=min(
                cost_total(Counters(cpu_ms=cpu_ms, wall_ms=wall_ms), attempt.rates, reservation),
                job.max_cost_micros,
            ),
        )
        for at, cpu_ms, wall_ms, current, peak in rows
    ]
    return AttemptUsage(
        attempt=attempt.number,
        host_id=attempt.host_id,
        host_name=attempt.host.name,
        status=attempt.status,
        report_count=count,
        samples=samples,
    )


def _timeline(job: Job, attempts: list[JobAttempt], *, is_owner: bool) -> list[TimelineEvent]:
    events: list[TimelineEvent] = []
    if is_owner:
        events.append(TimelineEvent(job.queued_at, "queued", None, ""))
    for attempt in attempts:
        number = attempt.number
        events.append(TimelineEvent(attempt.offered_at, "offered", number, ""))
        if attempt.accepted_at:
            events.append(TimelineEvent(attempt.accepted_at, "accepted", number, ""))
        if attempt.started_at:
            events.append(TimelineEvent(attempt.started_at, "running", number, ""))
        if attempt.finished_at and (attempt.status in _ENDED_ATTEMPT or not is_owner):
            events.append(
                TimelineEvent(attempt.finished_at, attempt.status, number, attempt.reason)
            )
    if is_owner and job.finished_at:
        events.append(TimelineEvent(job.finished_at, job.status, job.attempt, job.status_reason))
    return sorted(events, key=lambda event: event.at)
