"""Ringing an agent's doorbell: pushing a message to its live socket through the channel layer.

Each agent connection joins the group ``host.<id>``. The channel layer is at-most-once and may
drop a message silently, so it is only a doorbell: whatever the message says must already be
in the database, and a lost message is repaired by the next resume (``welcome``), lease or
heartbeat. That is also why sending waits for the surrounding transaction to commit.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from agent.protocol import SERVER_MESSAGES, encode, new_id

logger = logging.getLogger(__name__)

# Events the agent consumer understands (the ``type`` of a channel-layer message).
EVENT_PUSH = "agent.push"  # {"text": encoded envelope}: forward to the agent
EVENT_CLOSE = "agent.close"  # {"code": int[, "older_than": int]}: close the socket(s)


def host_group(host_id: int) -> str:
    return f"host.{host_id}"


def host_send(host_id: int, message_type: str, data: Any, *, message_id: str | None = None) -> str:
    """Send a server message to the host's agent once the current transaction commits.

    Returns the envelope id (the agent acknowledges some messages by it). Call from sync code;
    async code uses ``host_send_async``.
    """
    text, envelope_id = _envelope(message_type, data, message_id)
    transaction.on_commit(lambda: _group_send_sync(host_id, {"type": EVENT_PUSH, "text": text}))
    return envelope_id


async def host_send_async(
    host_id: int, message_type: str, data: Any, *, message_id: str | None = None
) -> str:
    text, envelope_id = _envelope(message_type, data, message_id)
    await _group_send(host_id, {"type": EVENT_PUSH, "text": text})
    return envelope_id


def host_close(host_id: int, code: int) -> None:
    """Close every socket of the host with ``code`` once the current transaction commits."""
    event = {"type": EVENT_CLOSE, "code": code}
    transaction.on_commit(lambda: _group_send_sync(host_id, event))


async def host_close_async(host_id: int, code: int, *, older_than: int) -> None:
    """Close the host's sockets that connected before connection number ``older_than`` (a
    newer one said hello: see hosts.services.host_hello)."""
    await _group_send(host_id, {"type": EVENT_CLOSE, "code": code, "older_than": older_than})


def _envelope(message_type: str, data: Any, message_id: str | None) -> tuple[str, str]:
    if message_type not in SERVER_MESSAGES:
        raise ValueError(f"{message_type!r} is not a server -> agent message type")
    envelope_id = message_id or new_id()
    return encode(message_type, data, envelope_id), envelope_id


def _group_send_sync(host_id: int, event: dict[str, Any]) -> None:
    async_to_sync(_group_send)(host_id, event)


async def _group_send(host_id: int, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(host_group(host_id), event)
    except Exception:
        # A doorbell that fails to ring changes nothing that matters: the state is committed
        # and the agent catches up on its next resume.
        logger.exception("could not reach host %s through the channel layer", host_id)
