"""The job's hold on the owner's credits: placed on submit (settlement is ``jobs.billing``).

Ledger services are durable transactions of their own, so this runs outside any open
transaction, and is idempotent by its ledger key: the reaper retries a hold a crash left
unrecorded.
"""

from __future__ import annotations

import contextlib

from django.utils import timezone

from config.errors import InsufficientCredits
from jobs.billing import job_hold_place
from jobs.models import Job, JobStatus
from jobs.states import IllegalTransition, job_transition


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
