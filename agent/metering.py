"""Metering arithmetic: from cumulative usage counters to an exact cost. Standard library only.

The one implementation, shared by the server (``jobs/metering.py`` re-exports it) and the
agent, whose local cap deadline (``seconds_until_cap``) must agree with the server's charge.

The agent reports cumulative counters for an attempt (CPU seconds used, wall seconds since the
container started). The server turns the *latest* counters into the attempt's total cost and
charges only the difference from what it already charged, so replayed or reordered reports
charge nothing twice and rounding never drifts: there is exactly one floor division, on the
total, and the sum of the charges always equals that floor.

Counters arrive as JSON numbers; they are converted once, at the edge, to integer milliseconds
through ``Decimal(str(x))`` and every step after that is integer arithmetic.

Prices (DESIGN.md): CPU per core-hour of CPU time *used*, memory per GB-hour *reserved*, GPU per
GPU-hour *reserved*. Reserved resources are billed from wall time and the job's limits, not from
what the agent says it reserved, so an agent can't inflate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

MS_PER_HOUR = 3_600_000
MB_PER_GB = 1024
# Slack for scheduler jitter and clock granularity when checking physical limits.
CPU_TOLERANCE_RATIO = Decimal("0.02")
CPU_TOLERANCE_MS = 1_000
WALL_TOLERANCE_MS = 5_000
# What is *billed* is bounded tighter than what is accepted (``billable_counters``): wall time
# at most the server's own running time plus this (the container starts a moment before the
# agent tells the server it runs), CPU at most that wall time x the job's cores, exactly.
BILLING_WALL_TOLERANCE_MS = 1_000


@dataclass(frozen=True)
class Rates:
    """Micro-credits per unit-hour, copied onto the job when it was placed."""

    cpu_core_hour_micros: int
    memory_gb_hour_micros: int
    gpu_hour_micros: int


@dataclass(frozen=True)
class Reservation:
    """What the job reserved on the host: its limits."""

    cpus: Decimal
    memory_mb: int
    gpus: int


@dataclass(frozen=True)
class Counters:
    """Cumulative usage of one attempt, in integer milliseconds."""

    cpu_ms: int
    wall_ms: int

    def covers(self, other: Counters) -> bool:
        """True when no counter is behind ``other`` (counters never go backwards)."""
        return self.cpu_ms >= other.cpu_ms and self.wall_ms >= other.wall_ms


class ImpossibleReport(ValueError):
    """A report that cannot be physically true; the host gets flagged."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def seconds_to_ms(value: float | int | str) -> int:
    """Convert a JSON number of seconds to integer milliseconds without float arithmetic."""
    try:
        seconds = Decimal(str(value))
    except InvalidOperation:
        raise ImpossibleReport("not_a_number", f"{value!r} is not a number") from None
    if not seconds.is_finite() or seconds < 0:
        raise ImpossibleReport("negative_counter", f"counter {value!r} must be >= 0")
    return int((seconds * 1000).to_integral_value(rounding=ROUND_FLOOR))


def counters_from_report(cpu_seconds: float | int, wall_seconds: float | int) -> Counters:
    return Counters(cpu_ms=seconds_to_ms(cpu_seconds), wall_ms=seconds_to_ms(wall_seconds))


def _cost_numerator(counters: Counters, rates: Rates, reservation: Reservation) -> int:
    # Everything over the common denominator MS_PER_HOUR * MB_PER_GB.
    cpu = counters.cpu_ms * rates.cpu_core_hour_micros * MB_PER_GB
    memory = reservation.memory_mb * counters.wall_ms * rates.memory_gb_hour_micros
    gpu = reservation.gpus * counters.wall_ms * rates.gpu_hour_micros * MB_PER_GB
    return cpu + memory + gpu


def cost_total(counters: Counters, rates: Rates, reservation: Reservation) -> int:
    """The attempt's total cost in micro-credits for these cumulative counters (floored)."""
    return _cost_numerator(counters, rates, reservation) // (MS_PER_HOUR * MB_PER_GB)


def cost_per_second_max(rates: Rates, reservation: Reservation) -> int:
    """The most one second of this job can cost: all reserved cores busy (rounded up)."""
    full_second = Counters(
        cpu_ms=int((reservation.cpus * 1000).to_integral_value(rounding=ROUND_CEILING)),
        wall_ms=1000,
    )
    numerator = _cost_numerator(full_second, rates, reservation)
    return -(-numerator // (MS_PER_HOUR * MB_PER_GB))


def check_physical(counters: Counters, reservation: Reservation, server_elapsed_ms: int) -> None:
    """Refuse counters no real container could produce.

    More CPU time than wall time x cores (plus a small tolerance), or more wall time than the
    server has seen pass since the attempt started, are lies or bugs; either way not billable.
    """
    cpu_limit = (
        Decimal(counters.wall_ms) * reservation.cpus * (1 + CPU_TOLERANCE_RATIO) + CPU_TOLERANCE_MS
    )
    if counters.cpu_ms > cpu_limit:
        raise ImpossibleReport(
            "cpu_exceeds_wall",
            f"{counters.cpu_ms} ms of CPU in {counters.wall_ms} ms of wall time "
            f"exceeds {reservation.cpus} cores",
        )
    if counters.wall_ms > server_elapsed_ms + WALL_TOLERANCE_MS:
        raise ImpossibleReport(
            "wall_ahead_of_server",
            f"wall time {counters.wall_ms} ms is ahead of the server's {server_elapsed_ms} ms",
        )


def billable_counters(counters: Counters, reservation: Reservation, window_ms: int) -> Counters:
    """The part of accepted counters that may be billed: wall time clipped to ``window_ms``
    (what the server saw and allowed: docs/metering.md), CPU clipped to that wall time x the
    job's cores (floored). Never more than the counters themselves."""
    wall = max(0, min(counters.wall_ms, window_ms))
    cpu_limit = int((Decimal(wall) * reservation.cpus).to_integral_value(rounding=ROUND_FLOOR))
    return Counters(cpu_ms=max(0, min(counters.cpu_ms, cpu_limit)), wall_ms=wall)


@dataclass(frozen=True)
class ChargeDecision:
    """What to post for a report: the new charge and whether the cap stops the job."""

    total_micros: int  # the attempt's total after this report, capped
    charge_micros: int  # what to post now (total minus what was already charged)
    stop: bool  # the next second would pass the cap: stop with budget_exhausted


def charge_decide(
    *,
    counters: Counters,
    rates: Rates,
    reservation: Reservation,
    charged_micros: int,
    cap_remaining_micros: int,
) -> ChargeDecision:
    """Decide the charge for an attempt's latest counters.

    ``charged_micros`` is what this attempt was already charged; ``cap_remaining_micros`` is
    what the job's cap still allows for this attempt (the cap minus other attempts' charges).
    The total is clamped to the cap, so the charges of a job never exceed it.
    """
    allowed_total = charged_micros + max(cap_remaining_micros, 0)
    total = min(cost_total(counters, rates, reservation), allowed_total)
    total = max(total, charged_micros)
    next_second = cost_per_second_max(rates, reservation)
    stop = total + next_second > allowed_total
    return ChargeDecision(total_micros=total, charge_micros=total - charged_micros, stop=stop)


def seconds_until_cap(*, rates: Rates, reservation: Reservation, cap_remaining_micros: int) -> int:
    """How many wall seconds the job may run before the cap, at full use (the agent's deadline)."""
    per_second = cost_per_second_max(rates, reservation)
    if per_second == 0:
        return 2**31
    return max(cap_remaining_micros, 0) // per_second
