"""Periodic housekeeping for accounts (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from accounts.idempotency import idempotency_records_prune


@shared_task
def idempotency_records_prune_task() -> int:
    return idempotency_records_prune()
