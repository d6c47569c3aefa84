"""The job's hold on the owner's credits: placed on submit, released when the job settles.

Ledger services are durable transactions of their own, so these run outside any open
transaction, and each is idempotent by its ledger key: the reaper retries whatever a crash
left half done (a hold placed but not recorded, a finished job not yet settled).
"""

from __future__ import annotations

import contextlib

from django.utils import timezone

from config.errors import InsufficientCredits
from jobs.billing import job_hold_place, job_hold_release
from jobs.models import Job, JobStatus
from jobs.states import FINAL, IllegalTransition, job_transition


def job_fund(job_id: int) -> bool:
    """Place (or find, by its key) the hold of a queued job that has none recorded.

    Moves money: wallet -> escrow through ledger.hold_place. A job whose hold can't be placed
    fails. Returns whether the job is now funded.
    """
    job = Job.objects.select_related("owner").filter(pk=job_id, hold_placed_at__isnull=True).first()
    if job is None or job.status != JobStatus.QUEUED:
        return False
    try:
        job_hold_place(job)
    except InsufficientCredits as exc:
        with contextlib.suppress(IllegalTransition):
            job_transition(job, JobStatus.FAILED, f"credits could not be held: {exc.message}")
        return False
    return (
        Job.objects.filter(pk=job_id, hold_placed_at__isnull=True).update(
            hold_placed_at=timezone.now()
        )
        == 1
    )


def job_settle(job_id: int) -> bool:
    """Release what is left of a finished job's hold to the owner's wallet, once.

    Moves money: escrow -> wallet through ledger.hold_release (idempotent by key). Until
    metering lands nothing was charged, so the whole hold goes back.
    """
    job = Job.objects.filter(
        pk=job_id, status__in=FINAL, hold_placed_at__isnull=False, hold_released_at__isnull=True
    ).first()
    if job is None:
        return False
    job_hold_release(job)
    return (
        Job.objects.filter(pk=job_id, hold_released_at__isnull=True).update(
            hold_released_at=timezone.now()
        )
        == 1
    )
