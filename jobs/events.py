"""Pushes to the owner's job socket through the channel layer (a doorbell, never the truth).

The channel layer is at-most-once: a dropped push costs the browser one live update, which it
recovers by reading the job over HTTP. So a failure to push is logged, never raised into the
service that already committed its change.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def job_event_push(job_id: int, event: dict[str, Any]) -> None:
    """Send ``event`` to every socket watching the job; call it after commit."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(job_group(job_id), {"type": "job.event", "event": event})
    except Exception:
        logger.warning("could not push %s for job %s", event.get("type"), job_id, exc_info=True)
