"""The agent socket ``/ws/agent/``: authentication, presence, and the job messages it serves.

A connection authenticates with ``Authorization: Bearer <host credential>`` in the handshake
(no cookies, no Origin check: agents are not browsers). It then speaks agent.protocol: the
agent's ``hello`` gets a ``welcome``, and from then on this process records the host's
presence while the socket is open; heartbeats (the agent's state, when it changes) go into
this process's next flush (``jobs.heartbeat_batch``: presence and leases of all its hosts in
one transaction per tick);
``job.*`` messages go to ``jobs.agent_messages``. Every message is decoded and
checked (types and bounds) with ``protocol.decode`` before anything is touched, and every write
names the authenticated host, never one taken from the message. A refused *report* about an
attempt of this host (``bad_field`` in job.started/log/usage/finished) touches one thing: the
host's flag count (``handle_report_malformed``; docs/protocol.md, "Bounds").

Each other message that touches the database is one entry point: one durable transaction
(``config.transactions.durable_call``), rerun whole when PostgreSQL aborts it as a deadlock or
serialization victim; channel-layer sends (``hosts.messaging``) wait for its commit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agent.protocol import (
    AGENT_MESSAGES,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REPLACED,
    CLOSE_UNAUTHORIZED,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    Envelope,
    Heartbeat,
    Hello,
    ProtocolError,
    RunningJobRef,
    Usage,
    Welcome,
    decode,
    encode,
    payload_check,
)
from config.errors import ServiceError
from config.transactions import durable_call
from hosts import services
from hosts.messaging import host_close_async, host_group
from jobs import heartbeat_batch
from jobs.agent_messages import (
    HANDLERS,
    REPORTS,
    Handler,
    Reply,
    handle_job_usage_fast,
    handle_report_malformed,
    resume_decide,
)
from jobs.heartbeat_batch import Answer
from jobs.services.dispatch import capacity_offer
from jobs.services.leases import leases_cut

logger = logging.getLogger(__name__)

# Framing errors mean the peer does not speak the protocol at all: close. Field errors in a
# well-formed envelope are answered with an ``error`` naming the message.
_FATAL_PROTOCOL_ERRORS = {"too_large", "bad_json", "bad_envelope"}
MAX_PROTOCOL_ERRORS = 20
# Agent messages the server acknowledges with ``ack {ack_id}`` once their handler returned;
# job.log and job.usage are acknowledged by their handler (log.ack / usage.ack).
ACKED_BY_ID = {"job.accept", "job.reject", "job.started", "job.finished"}


def bearer_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                return credential.strip()
    return None


@dataclass(frozen=True)
class _Welcomed:
    """A ``hello`` the host's presence accepted, and the jobs' answer to it."""

    is_draining: bool
    policy: Any
    keep_jobs: list[RunningJobRef]
    kill_jobs: list[RunningJobRef]
    replies: list[Reply]


def hello_accept(
    host_id: int, connection_id: str, connection_seq: int, hello: Hello
) -> services.Presence | _Welcomed:
    """One transaction: the presence update, the resume decision (what to keep and kill), and
    the queued jobs this host's free capacity can take now."""
    accepted = services.host_hello(
        host_id=host_id, connection_id=connection_id, connection_seq=connection_seq, hello=hello
    )
    if isinstance(accepted, services.Presence):
        return accepted
    keep, kill, replies = resume_decide(host_id, hello["running_jobs"])
    capacity_offer(host_id)
    return _Welcomed(accepted.is_draining, accepted.policy, keep, kill, replies)


def _reported(hello: Hello, keep_jobs: list[RunningJobRef]) -> Heartbeat:
    """The state a hello reports, as the heartbeat a presence refresh repeats until the
    agent's first heartbeat: what it runs is what the welcome kept."""
    report = Heartbeat(
        load=0.0,
        is_available=hello["is_available"],
        unavailable_reason="",
        running_jobs=keep_jobs,
        is_draining=hello["is_draining"],
    )
    if "slots" in hello:
        report["slots"] = hello["slots"]
    if "readiness" in hello:
        report["readiness"] = hello["readiness"]
    return report


def disconnect_accept(host_id: int, connection_id: str) -> None:
    """One transaction: the host goes offline (if this was its live socket) and what it runs
    is lost after HOST_DISCONNECT_GRACE_SECONDS unless its agent says hello again."""
    if services.host_disconnect(host_id=host_id, connection_id=connection_id):
        leases_cut(host_id, seconds=settings.HOST_DISCONNECT_GRACE_SECONDS)


class AgentConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    host_id: int | None = None
    connection_seq = 0
    is_welcomed = False
    is_gone = False
    protocol_errors = 0

    async def connect(self) -> None:
        bearer = bearer_from_headers(self.scope.get("headers", []))
        try:
            if bearer is None:
                raise services.HostAuthenticationFailed("no bearer credential")
            host = await database_sync_to_async(services.host_authenticate)(bearer)
        except services.HostAuthenticationFailed:
            # Accept first: a close code can only be sent on an open socket.
            await self.accept()
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.host_id = host.pk
        # The socket's place in the order of this host's connections; it becomes the live one
        # when it says hello (hosts.services.host_hello), not now.
        self.connection_seq = await database_sync_to_async(services.host_connect)(host_id=host.pk)
        await self.channel_layer.group_add(host_group(host.pk), self.channel_name)
        await self.accept()
        logger.info("agent of host %s connected (#%s)", host.pk, self.connection_seq)

    async def disconnect(self, code: int) -> None:
        self.is_gone = True
        if self.host_id is None:
            return
        heartbeat_batch.heartbeat_discard(self.host_id, self.channel_name)
        # The database first: presence must be right even when the channel layer (Redis) is
        # down and the group_discard below fails.
        try:
            await database_sync_to_async(durable_call)(
                disconnect_accept, self.host_id, self.channel_name
            )
        except Exception:
            logger.exception("disconnect of host %s was not recorded", self.host_id)
        try:
            await self.channel_layer.group_discard(host_group(self.host_id), self.channel_name)
        except Exception:
            logger.warning("host %s: channel layer unreachable at disconnect", self.host_id)
        logger.info("agent of host %s disconnected (%s)", self.host_id, code)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first closes stale database connections with a thread hop of
        # its own (aclose_old_connections), for every frame. Every database call here runs
        # through database_sync_to_async, which does that already in its worker thread, so the
        # extra hop only doubled the thread switches per agent message (docs/benchmarks.md).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.host_id is None:
            return
        raw: str | bytes = text_data if text_data is not None else (bytes_data or b"")
        try:
            envelope = decode(raw, AGENT_MESSAGES)
        except ProtocolError as exc:
            await self._protocol_error(exc, raw)
            return
        if envelope["type"] == "hello":
            await self._hello(envelope)
        elif not self.is_welcomed:
            await self._error("hello_required", "send hello first", envelope["id"])
        elif envelope["type"] == "heartbeat":
            await self._heartbeat(envelope)
        elif envelope["type"] == "job.usage":
            await self._usage(envelope)
        else:
            await self._dispatch(envelope, HANDLERS.get(envelope["type"]))

    # --- channel-layer events ----------------------------------------------------------------

    async def agent_push(self, event: dict[str, Any]) -> None:
        # Before the welcome the agent is resyncing anyway; the resume covers what it missed.
        if self.is_welcomed:
            await self.send(text_data=event["text"])

    async def agent_close(self, event: dict[str, Any]) -> None:
        if self.connection_seq < event.get("older_than", self.connection_seq + 1):
            await self.close(code=event["code"])

    # --- messages ----------------------------------------------------------------------------

    async def _hello(self, envelope: Envelope[Hello]) -> None:
        assert self.host_id is not None
        hello = envelope["data"]
        if hello["protocol_version"] != PROTOCOL_VERSION:
            await self._error(
                "unsupported_protocol_version",
                f"this server speaks protocol version {PROTOCOL_VERSION}",
                envelope["id"],
            )
            await self.close(code=CLOSE_PROTOCOL_ERROR)
            return
        try:
            accepted = await database_sync_to_async(durable_call)(
                hello_accept, self.host_id, self.channel_name, self.connection_seq, hello
            )
        except ServiceError as exc:
            await self._error(exc.code, exc.message, envelope["id"], exc.fields)
            await self.close(code=CLOSE_PROTOCOL_ERROR)
            return
        if isinstance(accepted, services.Presence):
            await self._presence_lost(accepted)
            return
        # This socket is the live one now: any older one of this host is told it was replaced.
        await host_close_async(self.host_id, CLOSE_REPLACED, older_than=self.connection_seq)
        welcome = Welcome(
            host_id=self.host_id,
            heartbeat_seconds=settings.HOST_HEARTBEAT_SECONDS,
            heartbeat_idle_seconds=settings.HOST_HEARTBEAT_IDLE_SECONDS,
            usage_report_seconds=settings.HOST_USAGE_REPORT_SECONDS,
            keep_jobs=accepted.keep_jobs,
            kill_jobs=accepted.kill_jobs,
        )
        self.is_welcomed = True
        # From now on this process records the host's presence while the socket is open,
        # whether or not the agent heartbeats (jobs.heartbeat_batch).
        heartbeat_batch.presence_hold(
            self.host_id,
            self.channel_name,
            _reported(hello, accepted.keep_jobs),
            self._heartbeat_answered,
        )
        await self._send("welcome", welcome)
        await self._send("drain", {"is_draining": accepted.is_draining})
        await self._send("policy", accepted.policy)
        await self._send_replies(accepted.replies)

    async def _heartbeat(self, envelope: Envelope[Heartbeat]) -> None:
        """Into this process's next flush (jobs.heartbeat_batch): no database round trip of
        its own; ``_heartbeat_answered`` sends what the flush decided."""
        assert self.host_id is not None
        heartbeat_batch.heartbeat_add(
            self.host_id, self.channel_name, envelope, self._heartbeat_answered
        )

    async def _heartbeat_answered(self, message_id: str, answer: Answer | None) -> None:
        if self.is_gone:
            return
        if answer is None:
            await self._error("internal_error", "the server failed; resend later", message_id)
        elif isinstance(answer, services.Presence):
            await self._presence_lost(answer)
        else:
            await self._send_replies(answer)

    async def _dispatch(self, envelope: Envelope[Any], handler: Handler | None) -> None:
        assert self.host_id is not None
        if handler is None:  # an ack: nothing on this server waits for the agent's acks
            return
        try:
            # In the thread pool, not the one thread that thread-sensitive code shares: one
            # agent's messages still run one at a time (each is awaited), but many agents'
            # handlers wait for the database side by side instead of in one queue. Each runs
            # in its own durable transaction on its thread's own connection, as it must anyway
            # with several daphne processes.
            replies = await database_sync_to_async(durable_call, thread_sensitive=False)(
                handler, self.host_id, envelope
            )
        except ServiceError as exc:
            await self._error(exc.code, exc.message, envelope["id"], exc.fields)
            return
        except Exception:
            logger.exception("handler for %s of host %s failed", envelope["type"], self.host_id)
            await self._error("internal_error", "the server failed; resend later", envelope["id"])
            return
        await self._send_replies(replies)
        if envelope["type"] in ACKED_BY_ID:
            acked = any(
                kind == "ack" and data.get("ack_id") == envelope["id"] for kind, data in replies
            )
            if not acked:
                await self._send("ack", {"ack_id": envelope["id"]})

    async def _usage(self, envelope: Envelope[Usage]) -> None:
        """Answer the next report of a running attempt on the event loop, in one statement (no
        thread hop: docs/metering.md); anything else goes to the handler the fast path names."""
        assert self.host_id is not None
        try:
            answer = await handle_job_usage_fast(self.host_id, envelope)
        except Exception:
            logger.exception("fast usage path of host %s failed", self.host_id)
            answer = HANDLERS["job.usage"]
        if isinstance(answer, list):
            await self._send_replies(answer)
        else:
            await self._dispatch(envelope, answer)

    # --- helpers -----------------------------------------------------------------------------

    async def _presence_lost(self, presence: services.Presence) -> None:
        code = CLOSE_REPLACED if presence is services.Presence.REPLACED else CLOSE_UNAUTHORIZED
        await self.close(code=code)

    async def _protocol_error(self, exc: ProtocolError, raw: str | bytes) -> None:
        self.protocol_errors += 1
        if exc.code == "bad_field":
            await self._malformed_report_flag(exc, raw)
        if exc.code in _FATAL_PROTOCOL_ERRORS or self.protocol_errors > MAX_PROTOCOL_ERRORS:
            logger.warning("closing agent of host %s: %s", self.host_id, exc.message)
            await self.close(code=CLOSE_PROTOCOL_ERROR)
            return
        await self._error(exc.code, exc.message, _envelope_id(raw))

    async def _malformed_report_flag(self, exc: ProtocolError, raw: str | bytes) -> None:
        """A report with a field out of bounds, about an attempt this host holds, flags the host
        (docs/protocol.md, "Bounds"); any other refused frame counts only towards the close."""
        ref = _report_ref(raw)
        if ref is None:
            return
        try:
            await database_sync_to_async(durable_call, thread_sensitive=False)(
                handle_report_malformed, self.host_id, *ref, f"bad_field: {exc.message}"
            )
        except Exception:
            logger.exception("flagging the malformed report of host %s failed", self.host_id)

    async def _error(
        self,
        code: str,
        message: str,
        ref_id: str | None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        data: dict[str, Any] = {"code": code, "message": message}
        if fields:
            data["message"] = f"{message}: " + "; ".join(f"{k}: {v}" for k, v in fields.items())
        if ref_id:
            data["ref_id"] = ref_id
        await self._send("error", data)

    async def _send_replies(self, replies: list[Reply]) -> None:
        for message_type, data in replies:
            if message_type not in SERVER_MESSAGES:
                raise ValueError(
                    f"handlers may only reply with server messages, not {message_type!r}"
                )
            await self._send(message_type, data)

    async def _send(self, message_type: str, data: Any) -> None:
        await self.send(text_data=encode(message_type, data))


def _envelope_of(raw: str | bytes) -> dict[str, Any] | None:
    if len(raw) > MAX_MESSAGE_BYTES:
        return None
    try:
        envelope = json.loads(raw)
    except ValueError:
        return None
    return envelope if isinstance(envelope, dict) else None


def _envelope_id(raw: str | bytes) -> str | None:
    """The id of a well-formed envelope whose content was refused, to name it in the error."""
    message_id = (_envelope_of(raw) or {}).get("id")
    return message_id if isinstance(message_id, str) and 0 < len(message_id) <= 64 else None


def _report_ref(raw: str | bytes) -> tuple[int, int] | None:
    """(job id, attempt) of a refused report (``REPORTS``) whose own reference is well formed."""
    envelope = _envelope_of(raw) or {}
    data = envelope.get("data")
    if envelope.get("type") not in REPORTS or not isinstance(data, dict):
        return None
    try:
        payload_check(RunningJobRef, {"job_id": data.get("job_id"), "attempt": data.get("attempt")})
    except ProtocolError:
        return None
    return int(data["job_id"]), int(data["attempt"])
