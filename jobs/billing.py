"""The jobs side of the ledger contract: hold a job's cap on submit, release what is left.

Every call goes to ``ledger.services`` (nothing here writes ledger tables) with a key naming
the job, so a retry after a crash returns the first transaction instead of moving money twice.
Ledger services run in ``transaction.atomic(durable=True)``: call these outside any open
transaction.

Until metering lands a job is never charged: its whole hold goes back to the wallet.
"""

from __future__ import annotations

from jobs.models import Job
from ledger.services import hold_place, hold_release


def hold_key(job_id: int) -> str:
    return f"job-hold:{job_id}"


def release_key(job_id: int) -> str:
    return f"job-release:{job_id}"


def job_hold_place(job: Job) -> None:
    """Move the job's cap from the owner's wallet to its escrow; raises InsufficientCredits."""
    hold_place(
        user=job.owner,
        job_id=job.pk,
        amount_micros=job.max_cost_micros,
        key=hold_key(job.pk),
    )


def job_hold_release(job: Job) -> None:
    """Give the rest of the job's escrow back to the owner's wallet."""
    hold_release(job_id=job.pk, key=release_key(job.pk))
