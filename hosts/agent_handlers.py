"""Where other apps plug their handling of agent messages into the agent socket.

Dependencies point ``jobs -> hosts``, so the agent consumer cannot import jobs. Instead
``jobs/apps.py`` ``ready()`` registers a handler per ``job.*`` message type (and optionally for
``heartbeat``, ``ack`` and the resume decision on ``hello``). Handlers are plain synchronous
functions (they run in a worker thread through ``database_sync_to_async``); they receive the
host id of the *authenticated* connection — never a host named inside the message — and
return the replies to send back on the same socket.

A handler refuses a message by raising a ``config.errors.ServiceError``: the agent then gets
an ``error`` with the error's code and ``ref_id`` set to the message id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.protocol import AGENT_MESSAGES, SERVER_MESSAGES, Envelope, RunningJobRef

# (server message type, data) pairs to send back to the agent.
Reply = tuple[str, Any]
Handler = Callable[[int, Envelope], list[Reply]]


@dataclass(frozen=True)
class ResumeDecision:
    """The ``welcome`` answer to the jobs an agent says it runs."""

    keep_jobs: list[RunningJobRef] = field(default_factory=list)
    kill_jobs: list[RunningJobRef] = field(default_factory=list)
    # Messages to send right after the welcome (e.g. offers still waiting for this host).
    replies: list[Reply] = field(default_factory=list)


ResumeHandler = Callable[[int, list[RunningJobRef]], ResumeDecision]
# Awaited on the socket's event loop before the handler; returns the replies, or None to let
# the (synchronous) handler decide. For the few messages where the thread hop costs more than
# the work: job.usage (docs/metering.md).
FastHandler = Callable[[int, Envelope], Awaitable[list[Reply] | None]]

# hello is answered by the consumer itself (presence + welcome); its job part is the resume
# handler below.
_HANDLED_BY_CONSUMER = {"hello"}
_handlers: dict[str, Handler] = {}
_fast_handlers: dict[str, FastHandler] = {}
_resume_handler: ResumeHandler | None = None


def register(message_type: str, handler: Handler) -> None:
    """Route agent messages of ``message_type`` to ``handler`` (one handler per type).

    For ``heartbeat`` the handler runs after the presence update (e.g. to renew job leases).
    """
    if message_type not in AGENT_MESSAGES or message_type in _HANDLED_BY_CONSUMER:
        raise ValueError(f"{message_type!r} is not an agent message type a handler can take")
    existing = _handlers.get(message_type)
    if existing is not None and existing is not handler:
        raise ValueError(f"a handler for {message_type!r} is already registered")
    _handlers[message_type] = handler


def register_fast(message_type: str, handler: FastHandler) -> None:
    """Try ``handler`` on the event loop first for ``message_type`` (which also needs an
    ordinary handler: the fast one may pass)."""
    if message_type not in AGENT_MESSAGES or message_type in _HANDLED_BY_CONSUMER:
        raise ValueError(f"{message_type!r} is not an agent message type a handler can take")
    _fast_handlers[message_type] = handler


def fast_handler_for(message_type: str) -> FastHandler | None:
    return _fast_handlers.get(message_type)


def register_resume(handler: ResumeHandler) -> None:
    """Decide, on ``hello``, which of the jobs the agent reports it should keep or kill."""
    global _resume_handler
    _resume_handler = handler


def handler_for(message_type: str) -> Handler | None:
    return _handlers.get(message_type)


def resume_decide(host_id: int, running_jobs: list[RunningJobRef]) -> ResumeDecision:
    """Without a resume handler the server knows of no jobs, so the agent kills all it runs."""
    if _resume_handler is None:
        return ResumeDecision(kill_jobs=list(running_jobs))
    return _resume_handler(host_id, running_jobs)


def reply_check(reply: Reply) -> None:
    if reply[0] not in SERVER_MESSAGES:
        raise ValueError(f"handlers may only reply with server messages, not {reply[0]!r}")


def registry_clear() -> None:
    """Forget every handler (tests only)."""
    global _resume_handler
    _handlers.clear()
    _fast_handlers.clear()
    _resume_handler = None


Snapshot = tuple[dict[str, Handler], ResumeHandler | None, dict[str, FastHandler]]


def registry_snapshot() -> Snapshot:
    return dict(_handlers), _resume_handler, dict(_fast_handlers)


def registry_restore(snapshot: Snapshot) -> None:
    global _resume_handler
    _handlers.clear()
    _handlers.update(snapshot[0])
    _resume_handler = snapshot[1]
    _fast_handlers.clear()
    _fast_handlers.update(snapshot[2])
