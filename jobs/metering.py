"""Metering arithmetic for the server: the pure functions live in ``agent/metering.py``.

The agent enforces a local deadline with the same formula the server charges with, and the
agent may not import ``jobs/``; so there is one implementation, in the agent package, and this
module re-exports it for the server's code.
"""

from agent.metering import (
    BILLING_WALL_TOLERANCE_MS,
    CPU_TOLERANCE_MS,
    CPU_TOLERANCE_RATIO,
    MB_PER_GB,
    MS_PER_HOUR,
    WALL_TOLERANCE_MS,
    ChargeDecision,
    Counters,
    ImpossibleReport,
    Rates,
    Reservation,
    billable_counters,
    charge_decide,
    check_physical,
    cost_per_second_max,
    cost_total,
    counters_from_report,
    seconds_to_ms,
    seconds_until_cap,
)

__all__ = [
    "BILLING_WALL_TOLERANCE_MS",
    "CPU_TOLERANCE_MS",
    "CPU_TOLERANCE_RATIO",
    "MB_PER_GB",
    "MS_PER_HOUR",
    "WALL_TOLERANCE_MS",
    "ChargeDecision",
    "Counters",
    "ImpossibleReport",
    "Rates",
    "Reservation",
    "billable_counters",
    "charge_decide",
    "check_physical",
    "cost_per_second_max",
    "cost_total",
    "counters_from_report",
    "seconds_to_ms",
    "seconds_until_cap",
]
