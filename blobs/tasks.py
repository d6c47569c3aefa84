"""Celery tasks of the blobs app."""

from __future__ import annotations

import logging

from celery import shared_task

from blobs.services.collect import blobs_collect

logger = logging.getLogger(__name__)


@shared_task
def blobs_collect_task() -> dict[str, int]:
    """The collector's pass (beat, every BLOB_COLLECT_INTERVAL_SECONDS); safe to rerun."""
    result = blobs_collect()
    logger.info("blobs collected: %s", result)
    return result.__dict__
