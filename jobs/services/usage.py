"""Usage reports from the agent: check them, store them, answer at once (docs/metering.md).

This is the hot path of metering: every running attempt reports every few seconds. A report is

1. checked: a seq at or below the attempt's furthest accepted report is a harmless repeat (no
   write at all); a newer report whose counters go backwards, or that no real container could
   produce (``check_physical``: more CPU than wall time x cores, more wall time than the server
   saw pass since the attempt started), is refused and the host flagged;
2. stored: the attempt's latest counters move forward and the report is kept
   (``UsageReport``, unique per attempt and seq) — only if they are still ahead, so racing
   reports can't move them back;
3. answered: ``usage.ack`` with ``stop`` when the next second at full use would pass the cap,
   counting the *unbilled* usage (the cost of the latest counters, not what was charged yet).

Charging is not done here: ``jobs.billing.usage_charges_post`` charges every attempt whose
reports are ahead of its charges, many at once, every second or so.

On PostgreSQL a report that is simply the next one (the common case) takes **one statement**
(``usage_ingest_fast``): fencing, the checks and the store are all in its WHERE clause, and it
returns what the answer needs. Anything else — a repeat, another host, a stale or ended
attempt, an impossible report — finds no row there and takes the general path, which reads the
attempt, classifies the message and refuses with the reason. Both paths accept exactly the
same reports: the SQL conditions are ``check_physical``'s, with its constants.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from agent.protocol import Usage
from config.errors import ServiceError
from hosts.services import host_report_flag
from jobs.metering import (
    CPU_TOLERANCE_MS,
    CPU_TOLERANCE_RATIO,
    WALL_TOLERANCE_MS,
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


@dataclass(frozen=True)
class BillingFacts:
    """What the answer to a report needs to know about the attempt and its job."""

    rates: Rates
    reservation: Reservation
    charged_micros: int  # this attempt, gross
    reversed_micros: int  # this attempt
    job_cost_micros: int  # every attempt, net of reversals
    max_cost_micros: int

    @property
    def allowance_micros(self) -> int:
        """The most this attempt may be charged in all: the cap less the other attempts'
        charges. Other attempts are over (one runs at a time) and their charges only shrink
        (a lost attempt's are reversed), so a stale read errs on the safe side."""
        own = self.charged_micros - self.reversed_micros
        return self.max_cost_micros - (self.job_cost_micros - own)


def job_reservation(job: Job) -> Reservation:
    return Reservation(cpus=Decimal(job.cpus), memory_mb=job.memory_mb, gpus=job.gpus)


def attempt_counters(attempt: JobAttempt) -> Counters:
    """The attempt's latest accepted cumulative counters."""
    return Counters(cpu_ms=attempt.usage_cpu_ms, wall_ms=attempt.usage_wall_ms)


def billing_facts(attempt: JobAttempt, job: Job) -> BillingFacts:
    return BillingFacts(
        rates=attempt.rates,
        reservation=job_reservation(job),
        charged_micros=attempt.charged_micros,
        reversed_micros=attempt.reversed_micros,
        job_cost_micros=job.cost_micros,
        max_cost_micros=job.max_cost_micros,
    )


def usage_budget(facts: BillingFacts, counters: Counters) -> tuple[bool, bool]:
    """(stop, is_cap_reached) for these counters, counting what is not charged yet."""
    allowance = facts.allowance_micros
    decision = charge_decide(
        counters=counters,
        rates=facts.rates,
        reservation=facts.reservation,
        charged_micros=facts.charged_micros,
        cap_remaining_micros=allowance - facts.charged_micros,
    )
    return decision.stop, cost_total(counters, facts.rates, facts.reservation) >= allowance


# --- the one-statement path ---------------------------------------------------------------------

_ACTIVE = sorted(str(status) for status in ATTEMPT_ACTIVE)
_ATTEMPT, _JOB = JobAttempt._meta.db_table, Job._meta.db_table
_REPORT = UsageReport._meta.db_table

# Every condition of the general path, in one UPDATE: the attempt is this host's, the job's
# current one and active; the report is newer and its counters don't go back; check_physical's
# two rules with its constants (numeric arithmetic: exact, like the Python Decimal). A
# non-final report's commit does not wait for the disk (see docs/metering.md: counters are
# cumulative, a lost report is covered by the next one; the final one is committed fully).
_FAST_SQL = f"""
WITH moved AS (
    UPDATE {_ATTEMPT} AS a
    SET usage_seq = %(seq)s, usage = %(usage)s::jsonb, usage_cpu_ms = %(cpu_ms)s,
        usage_wall_ms = %(wall_ms)s
    FROM {_JOB} AS j
    WHERE a.job_id = %(job)s AND a.number = %(number)s AND j.id = a.job_id
        AND a.host_id = %(host)s AND j.attempt = a.number AND a.status = ANY(%(active)s)
        AND a.usage_seq < %(seq)s AND a.usage_cpu_ms <= %(cpu_ms)s
        AND a.usage_wall_ms <= %(wall_ms)s
        AND %(cpu_ms)s <= %(wall_ms)s * j.cpus * %(cpu_ratio)s + %(cpu_slack)s
        AND %(wall_ms)s <= floor(extract(epoch FROM statement_timestamp()
            - coalesce(a.started_at, a.accepted_at)) * 1000) + %(wall_slack)s
        /* commit */
    RETURNING a.id, a.charged_micros, a.reversed_micros, a.cpu_core_hour_micros,
        a.memory_gb_hour_micros, a.gpu_hour_micros, j.cost_micros, j.max_cost_micros, j.cpus,
        j.memory_mb, j.gpus
), stored AS (
    INSERT INTO {_REPORT}
        (attempt_id, seq, cpu_ms, wall_ms, gpu_ms, memory_peak_mb, memory_current_mb, is_final,
        received_at)
    SELECT id, %(seq)s, %(cpu_ms)s, %(wall_ms)s, %(gpu_ms)s, %(memory_peak_mb)s,
        %(memory_current_mb)s, %(is_final)s, statement_timestamp()
    FROM moved
    ON CONFLICT (attempt_id, seq) DO NOTHING
)
SELECT charged_micros, reversed_micros, cpu_core_hour_micros, memory_gb_hour_micros,
    gpu_hour_micros, cost_micros, max_cost_micros, cpus, memory_mb, gpus
FROM moved
"""  # noqa: S608  (table names from our models; every value is a parameter)
_FAST_SQL_FINAL = _FAST_SQL.replace("/* commit */", "")
_FAST_SQL_ASYNC_COMMIT = _FAST_SQL.replace(
    "/* commit */", "AND set_config('synchronous_commit', 'off', true) = 'off'"
)


def fast_params(host_id: int, report: Usage) -> dict[str, Any] | None:
    """The one-statement path's parameters; None when the counters can't even be read."""
    try:
        counters = counters_from_report(report["cpu_seconds"], report["wall_seconds"])
        gpu_ms = seconds_to_ms(report["gpu_seconds"])
    except ImpossibleReport:
        return None  # the general path refuses it with the reason
    return {
        "job": report["job_id"],
        "number": report["attempt"],
        "host": host_id,
        "active": _ACTIVE,
        "seq": report["seq"],
        "cpu_ms": counters.cpu_ms,
        "wall_ms": counters.wall_ms,
        "gpu_ms": gpu_ms,
        "memory_peak_mb": max(0, report["memory_peak_mb"]),
        "memory_current_mb": max(0, report["memory_current_mb"]),
        "is_final": bool(report.get("is_final", False)),
        "usage": json.dumps(report),
        "cpu_ratio": 1 + CPU_TOLERANCE_RATIO,
        "cpu_slack": CPU_TOLERANCE_MS,
        "wall_slack": WALL_TOLERANCE_MS,
    }


def usage_ingest_fast(host_id: int, report: Usage) -> UsageVerdict | None:
    """Store the next report of an active attempt of this host in one statement and answer it;
    None when that does not apply (PostgreSQL only): then ``usage_ingest`` decides."""
    if connection.vendor != "postgresql":
        return None
    params = fast_params(host_id, report)
    if params is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(fast_sql(params), params)
        row = cursor.fetchone()
    return None if row is None else fast_verdict(row, params)


def fast_sql(params: dict[str, Any]) -> str:
    return _FAST_SQL_FINAL if params["is_final"] else _FAST_SQL_ASYNC_COMMIT


def fast_verdict(row: Sequence[Any], params: dict[str, Any]) -> UsageVerdict:
    """The answer to a report the one-statement path stored, from the row it returned."""
    charged, reversed_, cpu_rate, memory_rate, gpu_rate, cost, cap, cpus, memory, gpus = row
    facts = BillingFacts(
        rates=Rates(cpu_rate, memory_rate, gpu_rate),
        reservation=Reservation(cpus=Decimal(cpus), memory_mb=memory, gpus=gpus),
        charged_micros=charged,
        reversed_micros=reversed_,
        job_cost_micros=cost,
        max_cost_micros=cap,
    )
    counters = Counters(cpu_ms=params["cpu_ms"], wall_ms=params["wall_ms"])
    return UsageVerdict(True, *usage_budget(facts, counters))


# --- the general path ---------------------------------------------------------------------------


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
        host_report_flag(host_id=attempt.host_id, reason=exc.code)
        raise UsageRefused(f"{exc.code}: {exc.message}", fields={"reason": exc.code}) from None
    return counters


def usage_ingest(
    attempt: JobAttempt, report: Usage, *, now: datetime | None = None
) -> UsageVerdict:
    """Take one ``job.usage`` report of an active attempt (``attempt.job`` loaded, fenced by
    the caller). Repeats and older reports change nothing; a newer one is checked and stored.
    Raises ``UsageRefused`` for an impossible report (nothing stored, the host flagged).
    """
    now = now or timezone.now()
    job = attempt.job
    if report["seq"] > attempt.usage_seq:
        counters = usage_check(attempt, job, report, now)
        is_recorded = usage_store(attempt, report, counters, now)
        if is_recorded:
            attempt.usage_seq, attempt.usage = report["seq"], dict(report)
            attempt.usage_cpu_ms, attempt.usage_wall_ms = counters.cpu_ms, counters.wall_ms
    else:
        is_recorded = False
    facts = billing_facts(attempt, job)
    return UsageVerdict(is_recorded, *usage_budget(facts, attempt_counters(attempt)))


def usage_store(attempt: JobAttempt, report: Usage, counters: Counters, now: datetime) -> bool:
    """Store a checked report as the attempt's latest, if it still is; True when it was.

    A conditional UPDATE that decides, then the report row, in one transaction."""
    with transaction.atomic():
        return _usage_store(attempt, report, counters, now)


def _usage_store(attempt: JobAttempt, report: Usage, counters: Counters, now: datetime) -> bool:
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
    )
    if moved:
        UsageReport.objects.bulk_create(
            [
                UsageReport(
                    attempt_id=attempt.pk,
                    seq=report["seq"],
                    cpu_ms=counters.cpu_ms,
                    wall_ms=counters.wall_ms,
                    gpu_ms=seconds_to_ms(report["gpu_seconds"]),
                    memory_peak_mb=max(0, report["memory_peak_mb"]),
                    memory_current_mb=max(0, report["memory_current_mb"]),
                    is_final=bool(report.get("is_final", False)),
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
    usage_store(attempt, report, counters, now)
    return None
