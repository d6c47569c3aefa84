"""Pushes to the owner's job socket through the channel layer (a doorbell, never the truth).

The channel layer is at-most-once: a dropped push costs the browser one live update, which it
recovers by reading the job over HTTP. So a failure to push is logged, never raised into the
service that already committed its change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)
PUSHES_AT_ONCE = 20


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def group_group(group_id: int) -> str:
    """The channel-layer group of a job group's sockets."""
    return f"job-group.{group_id}"


def group_event_push(group_id: int, event: dict[str, Any]) -> None:
    """Send ``event`` to every socket watching the job group; call it after commit."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            group_group(group_id), {"type": "group.event", "event": event}
        )
    except Exception:
        logger.warning(
            "could not push %s for job group %s", event.get("type"), group_id, exc_info=True
        )


def job_event_push(job_id: int, event: dict[str, Any]) -> None:
    """Send ``event`` to every socket watching the job; call it after commit."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(job_group(job_id), {"type": "job.event", "event": event})
    except Exception:
        logger.warning("could not push %s for job %s", event.get("type"), job_id, exc_info=True)


def job_events_push(pushes: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Send many events (``(job_id, event)``) in one trip through the channel layer: one event
    loop for all of them, sent concurrently, where ``job_event_push`` would start one per
    event (the batch poster pushes the cost of every job it charged). Call it after commit."""
    layer = get_channel_layer()
    if layer is None or not pushes:
        return

    async def send_all() -> list[BaseException | None]:
        # Not all at once: the Redis layer's connection pool is bounded.
        room = asyncio.Semaphore(PUSHES_AT_ONCE)

        async def send(job_id: int, event: dict[str, Any]) -> None:
            async with room:
                await layer.group_send(job_group(job_id), {"type": "job.event", "event": event})

        results: list[BaseException | None] = await asyncio.gather(
            *(send(job_id, event) for job_id, event in pushes), return_exceptions=True
        )
        return results

    try:
        failures = [result for result in async_to_sync(send_all)() if result is not None]
    except Exception:
        logger.warning("could not push %d job events", len(pushes), exc_info=True)
        return
    if failures:
        logger.warning(
            "could not push %d of %d job events: %r", len(failures), len(pushes), failures[0]
        )
