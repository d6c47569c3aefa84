"""Sends server -> agent messages to a host's socket (the doorbell; the database is the truth).

An agent that misses a message is not harmed: offers expire and revert, cancels repeat with
every heartbeat reply, and a reconnecting agent is told what to keep and kill and gets its
open offers again. Callers send after commit; ``hosts.messaging.host_send`` also waits for any
transaction still open.
"""

from __future__ import annotations

import logging
from typing import Any

from hosts.messaging import host_send

logger = logging.getLogger(__name__)


def agent_send(host_id: int, message_type: str, data: Any) -> None:
    """Push one message to the host's agent; a failure is logged, never raised."""
    try:
        host_send(host_id, message_type, dict(data))
    except Exception:
        logger.warning("could not send %s to host %s", message_type, host_id, exc_info=True)
