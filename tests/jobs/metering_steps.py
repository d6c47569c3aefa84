"""Shared steps of the metering tests: a running attempt, reports, and the figures to expect.

The host's rates are chosen so that the expected cost is plain integer arithmetic, computed
here independently of ``jobs.metering``: 1 µcr per CPU-millisecond (3,600,000 per core-hour)
and, for the 512 MB the jobs reserve, half a µcr per wall millisecond (3,600,000 per GB-hour),
floored once on the total.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from hosts.models import Host
from jobs.models import Job, JobAttempt
from jobs.selectors import job_facts
from ledger.models import LedgerTransaction, Posting, TransactionKind
from ledger.money import fee_for
from ledger.services import ledger_reconcile
from tests.jobs.helpers import say, submit

RATES = {
    "cpu_core_hour_micros": 3_600_000,
    "memory_gb_hour_micros": 3_600_000,
    "gpu_hour_micros": 0,
}
FUNDS = 5_000_000
CAP = 1_000_000
# At full use (2 cores busy, 512 MB reserved) a second costs 2,500: the smallest cap is a minute.
PER_SECOND_MAX = 2_500


def expected_cost(cpu_ms: int, wall_ms: int) -> int:
    return cpu_ms + wall_ms // 2


def metered_job(owner: Any, host: Host | None, *, cap: int = CAP) -> Job:
    """2 CPUs, 512 MB on the chosen host (None: placed by the marketplace)."""
    return submit(owner, host=host, cpus=Decimal(2), memory_mb=512, max_cost_micros=cap)


def run(job: Job, host: Host, attempt: int = 1, *, started_ago_s: int = 3600) -> JobAttempt:
    """The host accepts and starts the attempt; the server saw it start ``started_ago_s``
    seconds ago (so reports of that much wall time are physically possible)."""
    say(host, "job.accept", job_id=job.pk, attempt=attempt)
    say(host, "job.started", job_id=job.pk, attempt=attempt, phase="running")
    JobAttempt.objects.filter(job=job, number=attempt).update(
        started_at=timezone.now() - timedelta(seconds=started_ago_s)
    )
    return JobAttempt.objects.get(job=job, number=attempt)


def report(
    host: Host, job: Job, seq: int, cpu: str, wall: str, *, attempt: int = 1, **extra: Any
) -> list[tuple[str, dict[str, Any]]]:
    """The agent reports cumulative counters (seconds, as decimal strings for exactness)."""
    data = {
        "job_id": job.pk,
        "attempt": attempt,
        "seq": seq,
        "cpu_seconds": float(cpu),
        "wall_seconds": float(wall),
        "memory_peak_mb": 100 + seq,
        "memory_current_mb": 90,
        "gpu_seconds": 0.0,
        **extra,
    }
    return say(host, "job.usage", **data)


def final(job: Job, seq: int, cpu: str, wall: str, *, attempt: int = 1, **extra: Any) -> Any:
    usage = {
        "job_id": job.pk,
        "attempt": attempt,
        "seq": seq,
        "cpu_seconds": float(cpu),
        "wall_seconds": float(wall),
        "memory_peak_mb": 100,
        "memory_current_mb": 0,
        "gpu_seconds": 0.0,
        "is_final": True,
    }
    values = {
        "job_id": job.pk,
        "attempt": attempt,
        "status": "succeeded",
        "reason": "exit code 0",
        "exit_code": 0,
        "outputs": [],
        "usage": usage,
        **extra,
    }
    return values


def captured(job: Job, attempt: int | None = None) -> int:
    """Gross captured from the job's escrow (before reversals), from the ledger itself."""
    postings = Posting.objects.filter(
        transaction__job_id=job.pk,
        transaction__kind=TransactionKind.CAPTURE,
        account__kind="escrow",
    )
    if attempt is not None:
        postings = postings.filter(transaction__attempt=attempt)
    return -int(postings.aggregate(total=Sum("amount_micros"))["total"] or 0)


def charged(job: Job) -> int:
    """What the job's escrow paid out: captures net of reversals."""
    postings = Posting.objects.filter(
        transaction__job_id=job.pk,
        transaction__kind__in=[TransactionKind.CAPTURE, TransactionKind.REVERSAL],
        account__kind="escrow",
    )
    return -int(postings.aggregate(total=Sum("amount_micros"))["total"] or 0)


def usage_keys(job: Job) -> list[str]:
    return list(
        LedgerTransaction.objects.filter(job_id=job.pk, kind=TransactionKind.CAPTURE)
        .order_by("pk")
        .values_list("key", flat=True)
    )


def fee_of(total: int) -> int:
    return fee_for(total)


def assert_reconciled() -> None:
    report_ = ledger_reconcile(job_facts=job_facts)
    assert report_.problems == []
    assert "job_cost_matches_charges" in report_.checks
