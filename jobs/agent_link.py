"""Sends server -> agent messages to a host's socket (the doorbell; the database is the truth).

An agent that misses a message is not harmed: offers expire and revert, cancels repeat with
every heartbeat reply, and a reconnecting agent is told what to keep and kill.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from agent.protocol import encode

logger = logging.getLogger(__name__)


def _host_send_fallback(host_id: int, message_type: str, data: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        text = encode(message_type, data)
        async_to_sync(layer.group_send)(f"host.{host_id}", {"type": "agent.push", "text": text})


def agent_send(host_id: int, message_type: str, data: Any) -> None:
    """Push one message to the host's agent; failures are logged (call it after commit)."""
    # INTEGRATION POINT: the hosts branch provides hosts.messaging.host_send(host_id, type,
    # data); until it is on main this falls back to a channel-layer group of the same name.
    try:
        module = importlib.import_module("hosts.messaging")
        send = getattr(module, "host_send", _host_send_fallback)
    except ImportError:
        send = _host_send_fallback
    try:
        send(host_id, message_type, dict(data))
    except Exception:
        logger.warning("could not send %s to host %s", message_type, host_id, exc_info=True)
