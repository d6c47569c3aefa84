"""Usage reports from the agent: check them, store them, answer at once (docs/metering.md).

This is the hot path of metering: every running attempt reports every few seconds. A report is

1. checked: a seq at or below the attempt's furthest accepted report is a harmless repeat (no
   write at all); a newer report whose counters go backwards, or that no real container could
   produce (``check_physical``: more CPU than wall time x cores, more wall time than the server
   saw pass since the attempt started), is refused and the host flagged;
2. stored: one statement on PostgreSQL stores the report (``UsageReport``, unique per attempt
   and seq) and moves the attempt's latest counters and their cost forward — only if they are
   still ahead (``usage_seq < seq``), so racing reports can't move them back;
3. answered: ``usage.ack`` with ``stop`` when the next second at full use would pass the cap,
   counting the *unbilled* usage (the cost of the latest counters, not what was charged yet).

Charging is not done here: ``jobs.billing.usage_charges_post`` charges every attempt whose
counters are ahead of its charges, many at once, every second or so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from agent.protocol import Usage
from config.errors import ServiceError
from hosts.services import host_report_flag
from jobs.metering import (
    Counters,
    ImpossibleReport,
    Rates,
    Reservation,
    charge_decide,
    check_physical,
    cost_total,
    counters_from_report,
    seconds_to_ms,
)
from jobs.models import Job, JobAttempt, UsageReport
from jobs.states import ATTEMPT_ACTIVE


class UsageRefused(ServiceError):
    """A report that can't be true (counters backwards, physically impossible): not stored,
    and the host flagged for staff to look at."""

    default_code = "usage_refused"


@dataclass(frozen=True)
class UsageVerdict:
    is_recorded: bool  # the report moved the attempt's latest counters forward
    stop: bool  # the next second at full use would pass the cap: stop the job
    is_cap_reached: bool  # the reported usage already costs the whole cap: the job must end


def attempt_rates(attempt: JobAttempt) -> Rates:
    return Rates(
        cpu_core_hour_micros=attempt.cpu_core_hour_micros,
        memory_gb_hour_micros=attempt.memory_gb_hour_micros,
        gpu_hour_micros=attempt.gpu_hour_micros,
    )


def job_reservation(job: Job) -> Reservation:
    return Reservation(cpus=Decimal(job.cpus), memory_mb=job.memory_mb, gpus=job.gpus)


def attempt_counters(attempt: JobAttempt) -> Counters:
    """The attempt's latest accepted cumulative counters."""
    return Counters(cpu_ms=attempt.usage_cpu_ms, wall_ms=attempt.usage_wall_ms)


def attempt_allowance(attempt: JobAttempt, job: Job) -> int:
    """The most this attempt may be charged in all: the cap less the other attempts' charges.

    Other attempts are over (one attempt runs at a time) and their charges only shrink (a lost
    attempt's are reversed), so a stale read errs on the safe side.
    """
    own = attempt.charged_micros - attempt.reversed_micros
    return job.max_cost_micros - (job.cost_micros - own)


def usage_budget(attempt: JobAttempt, job: Job, counters: Counters) -> tuple[bool, bool]:
    """(stop, is_cap_reached) for these counters, counting what is not charged yet."""
    allowance = attempt_allowance(attempt, job)
    rates, reservation = attempt_rates(attempt), job_reservation(job)
    decision = charge_decide(
        counters=counters,
        rates=rates,
        reservation=reservation,
        charged_micros=attempt.charged_micros,
        cap_remaining_micros=allowance - attempt.charged_micros,
    )
    return decision.stop, cost_total(counters, rates, reservation) >= allowance


def _server_elapsed_ms(attempt: JobAttempt, now: datetime) -> int:
    started = attempt.started_at or attempt.accepted_at
    if started is None:
        return 0
    return max(0, int((now - started).total_seconds() * 1000))


def usage_check(attempt: JobAttempt, job: Job, report: Usage, now: datetime) -> Counters:
    """The report's counters, if a real container could have produced them after the latest
    accepted ones; else ``UsageRefused`` (and the host is flagged)."""
    try:
        counters = counters_from_report(report["cpu_seconds"], report["wall_seconds"])
        seconds_to_ms(report["gpu_seconds"])
        if not counters.covers(attempt_counters(attempt)):
            raise ImpossibleReport(
                "counters_backwards",
                f"counters {counters} are behind those already accepted "
                f"(seq {attempt.usage_seq}: {attempt_counters(attempt)})",
            )
        check_physical(counters, job_reservation(job), _server_elapsed_ms(attempt, now))
    except ImpossibleReport as exc:
        host_report_flag(host_id=attempt.host_id)
        raise UsageRefused(f"{exc.code}: {exc.message}", fields={"reason": exc.code}) from None
    return counters


def usage_ingest(
    attempt: JobAttempt, report: Usage, *, now: datetime | None = None
) -> UsageVerdict:
    """Take one ``job.usage`` report of an active attempt (``attempt.job`` loaded, fenced by
    the caller). Repeats and older reports change nothing; a newer one is checked and stored.
    Raises ``UsageRefused`` for an impossible report (nothing stored, the host flagged).
    One statement when it stores, none for a repeat; no locks beyond the row it updates.
    """
    now = now or timezone.now()
    job = attempt.job
    if report["seq"] <= attempt.usage_seq:
        return UsageVerdict(False, *usage_budget(attempt, job, attempt_counters(attempt)))
    counters = usage_check(attempt, job, report, now)
    cost = cost_total(counters, attempt_rates(attempt), job_reservation(job))
    is_recorded = usage_store(attempt, report, counters, cost, now)
    if is_recorded:
        attempt.usage_seq, attempt.usage = report["seq"], dict(report)
        attempt.usage_cpu_ms, attempt.usage_wall_ms = counters.cpu_ms, counters.wall_ms
        attempt.usage_cost_micros = cost
    return UsageVerdict(is_recorded, *usage_budget(attempt, job, attempt_counters(attempt)))


_ACTIVE = sorted(str(status) for status in ATTEMPT_ACTIVE)

# Store the report and move the attempt's latest counters forward, in one statement: the UPDATE
# decides (still active, still ahead), the report row is written only when it did.
_STORE_SQL = f"""
WITH moved AS (
    UPDATE {JobAttempt._meta.db_table}
    SET usage_seq = %(seq)s, usage = %(usage)s::jsonb, usage_cpu_ms = %(cpu_ms)s,
        usage_wall_ms = %(wall_ms)s, usage_cost_micros = %(cost)s
    WHERE id = %(attempt)s AND status = ANY(%(active)s) AND usage_seq < %(seq)s
        AND usage_cpu_ms <= %(cpu_ms)s AND usage_wall_ms <= %(wall_ms)s
    RETURNING id
)
INSERT INTO {UsageReport._meta.db_table}
    (attempt_id, seq, cpu_ms, wall_ms, gpu_ms, memory_peak_mb, is_final, received_at)
SELECT id, %(seq)s, %(cpu_ms)s, %(wall_ms)s, %(gpu_ms)s, %(memory_peak_mb)s, %(is_final)s,
    %(now)s
FROM moved
ON CONFLICT (attempt_id, seq) DO NOTHING
RETURNING 1
"""  # noqa: S608  (table names from our models; every value is a parameter)


def usage_store(
    attempt: JobAttempt, report: Usage, counters: Counters, cost: int, now: datetime
) -> bool:
    """Store a checked report as the attempt's latest, if it still is; True when it was."""
    gpu_ms = seconds_to_ms(report["gpu_seconds"])
    memory_peak_mb = max(0, report["memory_peak_mb"])
    is_final = bool(report.get("is_final", False))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _STORE_SQL,
                {
                    "attempt": attempt.pk,
                    "seq": report["seq"],
                    "cpu_ms": counters.cpu_ms,
                    "wall_ms": counters.wall_ms,
                    "gpu_ms": gpu_ms,
                    "memory_peak_mb": memory_peak_mb,
                    "is_final": is_final,
                    "cost": cost,
                    "now": now,
                    "usage": json.dumps(report),
                    "active": _ACTIVE,
                },
            )
            return cursor.fetchone() is not None
    moved = JobAttempt.objects.filter(
        pk=attempt.pk,
        status__in=ATTEMPT_ACTIVE,
        usage_seq__lt=report["seq"],
        usage_cpu_ms__lte=counters.cpu_ms,
        usage_wall_ms__lte=counters.wall_ms,
    ).update(
        usage_seq=report["seq"],
        usage=dict(report),
        usage_cpu_ms=counters.cpu_ms,
        usage_wall_ms=counters.wall_ms,
        usage_cost_micros=cost,
    )
    if moved:
        UsageReport.objects.bulk_create(
            [
                UsageReport(
                    attempt_id=attempt.pk,
                    seq=report["seq"],
                    cpu_ms=counters.cpu_ms,
                    wall_ms=counters.wall_ms,
                    gpu_ms=gpu_ms,
                    memory_peak_mb=memory_peak_mb,
                    is_final=is_final,
                    received_at=now,
                )
            ],
            ignore_conflicts=True,
        )
    return moved == 1


def attempt_final_usage_record(attempt: JobAttempt, report: Usage, now: datetime) -> str | None:
    """Record the final report that comes with ``job.finished`` (before the attempt's status
    moves on). Returns why it was refused (the host is flagged), or None."""
    if report["seq"] <= attempt.usage_seq:
        return None
    try:
        counters = usage_check(attempt, attempt.job, report, now)
    except UsageRefused as exc:
        return exc.message
    cost = cost_total(counters, attempt_rates(attempt), job_reservation(attempt.job))
    usage_store(attempt, report, counters, cost, now)
    return None
