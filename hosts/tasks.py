"""Periodic host tasks (scheduled in config/settings.py CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from hosts import services


@shared_task
def hosts_mark_offline_task() -> int:
    """Mark hosts offline that missed their heartbeats; idempotent, safe to retry."""
    return services.hosts_mark_stale_offline()
