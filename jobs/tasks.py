"""Periodic and queued work of the jobs app (see CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from jobs.services.dispatch import job_offer_next
from jobs.services.dispatch import jobs_reap as reap


@shared_task(name="jobs.tasks.jobs_reap", ignore_result=True)
def jobs_reap() -> None:
    """Expire unanswered offers, lose expired leases, offer queued jobs, settle holds."""
    reap()


@shared_task(name="jobs.tasks.job_dispatch", ignore_result=True)
def job_dispatch(job_id: int) -> None:
    job_offer_next(job_id)
