"""The agent's connection to the server: hello, heartbeats, reconnects, the outbox, drain.

One ``AgentClient`` runs for the agent's lifetime. It connects to ``/ws/agent/`` with the host
credential, says ``hello`` (specs, running jobs, availability), waits for ``welcome``, then
sends a heartbeat whenever its state changes (availability, drain, slots, readiness, running
jobs: checked every second) and otherwise every ``heartbeat_idle_seconds`` (an older server,
which sends none: every ``heartbeat_seconds``): the server takes the open socket as presence,
and websocket pings find a dead connection: the server's, which the agent answers, and the
agent's own only when the server has gone quiet (agent/keepalive.py). When the
connection drops it reconnects with jittered exponential backoff and resends every message the
server has not acknowledged. SIGTERM (or ``communipute-agent drain --exit``) drains: no new
work, exit once no job runs. Jobs themselves belong to a ``JobManager``
(agent/job_manager_protocol.py), which also says how many slots the host has and whether it is
ready; both go out in hello and every heartbeat.

A close with 4409 (another connection of this host took over) is checked, not believed: the
agent reconnects with backoff, and exits with status 4 only when it is replaced again and
again (``REPLACED_LIMIT`` times in a row), which is what two agents sharing a credential do. A
stale handshake that a stalled server accepted late costs one reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import signal
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from agent import __version__
from agent.config import AgentConfig
from agent.control import DrainMode, drain_request, drain_requested, state_write
from agent.idle import AVAILABLE, Availability, AvailabilityMonitor, Monitor
from agent.job_manager_protocol import JobManager, RejectCode, RejectingJobManager, reject
from agent.keepalive import QuietClientConnection
from agent.outbox import RELIABLE_TYPES, Outbox
from agent.protocol import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REPLACED,
    CLOSE_UNAUTHORIZED,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    AvailabilityPolicy,
    Drain,
    Envelope,
    Error,
    Heartbeat,
    Hello,
    HostSpecs,
    JobCancel,
    JobOffer,
    OutputRelease,
    ProtocolError,
    Readiness,
    Welcome,
    decode,
    encode,
    new_id,
)
from agent.specs import specs_collect

logger = logging.getLogger("agent")

WELCOME_TIMEOUT_SECONDS = 30
TICK_SECONDS = 1.0
AVAILABILITY_CHECK_SECONDS = 5.0
# Once the last job ended, how long an exiting agent waits for unacknowledged reports.
EXIT_OUTBOX_GRACE_SECONDS = 30.0
# The agent pings the server only once nothing came from it for this long (agent/keepalive.py):
# more than daphne's ping interval (20 s as deploy/ runs it and by default, checked every 2 s),
# so a live server's own pings keep it quiet; it drops the connection when the pong takes
# longer than PING_TIMEOUT_SECONDS: a dead or stalled server is left within about 40 s, before
# the 60 s leases of the jobs it runs are out.
SERVER_SILENCE_SECONDS = 25.0
PING_TIMEOUT_SECONDS = 15.0
# Closed with 4409 this many times in a row: another agent really uses this credential.
REPLACED_LIMIT = 3
# A connection that stayed this long forgets earlier replacements.
REPLACED_FORGET_SECONDS = 60.0

EXIT_OK = 0
EXIT_UNAUTHORIZED = 3
EXIT_REPLACED = 4


class FatalClose(Exception):
    """The server closed the socket for a reason reconnecting cannot fix."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def backoff_delay(
    attempt: int, initial: float, maximum: float, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with "equal jitter": uniform in [ceiling/2, ceiling]."""
    ceiling: float = min(maximum, initial * 2.0 ** min(attempt, 32))
    return ceiling / 2 + rng() * ceiling / 2


def _state_changed(sent: Heartbeat, now: Heartbeat) -> bool:
    """Whether a heartbeat says something the last one sent did not: everything but ``load``,
    which moves all the time and which the server does not keep."""
    return {**sent, "load": 0} != {**now, "load": 0}


def policy_default() -> AvailabilityPolicy:
    return AvailabilityPolicy(timezone="UTC", windows=[], idle_minutes=None, max_load=None)


class AgentClient:
    def __init__(
        self,
        config: AgentConfig,
        *,
        job_manager: JobManager | None = None,
        monitor: Monitor | None = None,
        specs_provider: Callable[[], HostSpecs] | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.config = config
        self.jobs: JobManager = job_manager or RejectingJobManager()
        self.monitor: Monitor = monitor or AvailabilityMonitor()
        self._specs_provider = specs_provider or (lambda: specs_collect(config.work_dir))
        self.outbox = Outbox()
        self.policy = policy_default()
        self.availability: Availability = AVAILABLE
        self.is_server_draining = False
        self.drain_mode: DrainMode | None = None
        self.heartbeat_seconds = 10.0
        self.heartbeat_idle_seconds = 10.0
        self.usage_report_seconds = 5.0
        self.exit_code = EXIT_OK
        self.connected_since: str | None = None
        self.last_error = ""
        self._ws: ClientConnection | None = None
        self._queue: asyncio.Queue[str] | None = None
        self._welcomed = asyncio.Event()
        self._heartbeat_now = asyncio.Event()
        self._stop = asyncio.Event()
        self._signals = 0
        self._jobs_ended_at: float | None = None
        self._last_state: dict[str, Any] | None = None
        self._handle_signals = handle_signals
        self.replacements = 0  # consecutive closes with 4409 (REPLACED_LIMIT)
        self._close_code: int | None = None
        self._welcomed_at: float | None = None
        self._last_readiness: Readiness | None = None
        self._releases: dict[int, asyncio.Task[bool]] = {}  # output.release under way, by id

    # --- AgentLink ----------------------------------------------------------------------------

    def send(self, message_type: str, data: Any) -> str:
        """Queue a message; job.* messages are kept until acknowledged and resent on reconnect."""
        if message_type in RELIABLE_TYPES:
            entry = self.outbox.add(message_type, data)
            self._enqueue(encode(message_type, data, entry.id))
            return entry.id
        message_id = new_id()
        self._enqueue(encode(message_type, data, message_id))
        return message_id

    @property
    def is_connected(self) -> bool:
        return self._welcomed.is_set() and self._ws is not None

    @property
    def is_draining(self) -> bool:
        return self.drain_mode is not None

    # --- lifetime -----------------------------------------------------------------------------

    async def run(self) -> int:
        """Connect and stay connected until told to stop; returns the process exit code."""
        await self.jobs.start(self)
        if self._handle_signals:
            self._signals_install()
        ticker = asyncio.create_task(self._ticker())
        attempt = 0
        try:
            while not self._stop.is_set():
                was_welcomed = await self._connection()
                if self._stop.is_set():
                    break
                attempt = 0 if was_welcomed else attempt + 1
                if self._replaced_check(was_welcomed):
                    attempt = self.replacements
                delay = backoff_delay(
                    attempt, self.config.backoff_initial_seconds, self.config.backoff_max_seconds
                )
                logger.info("reconnecting in %.1f s", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        except FatalClose as exc:
            logger.error("%s", exc)
            self.exit_code = exc.exit_code
        finally:
            ticker.cancel()
            await self.jobs.stop()
            self._state_publish(running=False)
            if drain_requested(self.config.control_path) == "exit":
                drain_request(self.config.control_path, None)  # done; a plain drain persists
        return self.exit_code

    def stop(self) -> None:
        """Exit now (running jobs keep running; a restarted agent finds them)."""
        self._stop.set()
        if self._ws is not None:
            asyncio.get_running_loop().create_task(self._ws.close(1001, "agent stopping"))

    def drain(self, mode: DrainMode | None) -> None:
        """Stop taking new work (``drain``), and exit once no job runs (``exit``); None resumes."""
        if mode == self.drain_mode:
            return
        if mode is None:
            logger.info("drain withdrawn: taking new work again")
        elif mode == "exit":
            logger.info("draining: exiting once no job runs")
        else:
            logger.info("draining: no new work until `communipute-agent drain --cancel`")
        self.drain_mode = mode
        self._heartbeat_now.set()

    def _replaced_check(self, was_welcomed: bool) -> bool:
        """After a connection: count closes with 4409 in a row (True if this was one) and give
        up once another agent has taken over REPLACED_LIMIT times. A connection that stayed
        REPLACED_FORGET_SECONDS, or ended any other way, forgets the count."""
        stayed = (
            was_welcomed
            and self._welcomed_at is not None
            and time.monotonic() - self._welcomed_at >= REPLACED_FORGET_SECONDS
        )
        if self._close_code != CLOSE_REPLACED:
            if was_welcomed:
                self.replacements = 0
            return False
        self.replacements = 1 if stayed else self.replacements + 1
        if self.replacements >= REPLACED_LIMIT:
            raise FatalClose(
                EXIT_REPLACED,
                f"another agent connected with this host's credential {self.replacements} times "
                "in a row; this one stops",
            )
        logger.warning(
            "another connection of this host took over (%d of %d): reconnecting to check",
            self.replacements,
            REPLACED_LIMIT,
        )
        return True

    # --- one connection -----------------------------------------------------------------------

    async def _connection(self) -> bool:
        """Connect once and serve until the socket closes; True if it got as far as welcome."""
        ws: ClientConnection | None = None
        self._close_code, self._welcomed_at = None, None
        try:
            async with connect(
                self.config.websocket_url,
                additional_headers={"Authorization": f"Bearer {self.config.credential}"},
                user_agent_header=f"communipute-agent/{__version__}",
                ssl=self._ssl_context(),
                open_timeout=15,
                close_timeout=5,
                max_size=MAX_MESSAGE_BYTES,
                create_connection=QuietClientConnection,
                ping_interval=SERVER_SILENCE_SECONDS,
                ping_timeout=PING_TIMEOUT_SECONDS,
            ) as ws:
                await self._session(ws)
        except InvalidStatus as exc:
            self._error(f"the server refused the connection: HTTP {exc.response.status_code}")
        except ConnectionClosed:
            pass  # the close code says why, below
        except (OSError, TimeoutError, WebSocketException) as exc:
            self._error(f"cannot reach {self.config.server}: {exc or type(exc).__name__}")
        if ws is not None:
            self._close_check(ws)
        return ws is not None and self._welcomed.is_set()

    async def _session(self, ws: ClientConnection) -> None:
        self._ws, self._queue = ws, asyncio.Queue()
        self._welcomed.clear()
        self.connected_since = None
        tasks: list[asyncio.Task[None]] = []
        try:
            hello = await self._hello()
            with contextlib.suppress(ConnectionClosed):
                await ws.send(encode("hello", hello))
                tasks = [
                    asyncio.create_task(self._writer(ws, self._queue)),
                    asyncio.create_task(self._heartbeats(ws)),
                ]
                async for raw in ws:
                    await self._receive(raw)
        finally:
            for task in tasks:
                task.cancel()
            self._ws, self._queue = None, None
            self._state_publish()

    def _close_check(self, ws: ClientConnection) -> None:
        code, reason = ws.close_code, ws.close_reason or ""
        self._close_code = code
        if code == CLOSE_UNAUTHORIZED:
            raise FatalClose(
                EXIT_UNAUTHORIZED,
                "the server refused this host's credential (revoked?): enroll the host again",
            )
        if code == CLOSE_REPLACED:
            self._error("another connection of this host took over (4409)")
        elif code == CLOSE_PROTOCOL_ERROR:
            self._error(f"the server closed the connection: protocol error {reason}".strip())
        elif not self._stop.is_set():
            self._error(f"connection closed ({code} {reason})".strip())

    async def _writer(self, ws: ClientConnection, queue: asyncio.Queue[str]) -> None:
        while True:
            text = await queue.get()
            await ws.send(text)

    async def _heartbeats(self, ws: ClientConnection) -> None:
        try:
            await asyncio.wait_for(self._welcomed.wait(), WELCOME_TIMEOUT_SECONDS)
        except TimeoutError:
            self._error("no welcome from the server")
            await ws.close(1002, "no welcome")
            return
        sent: Heartbeat | None = None
        sent_at = 0.0
        while True:
            heartbeat = self._heartbeat()
            now = time.monotonic()
            if (
                self._heartbeat_now.is_set()
                or sent is None
                or _state_changed(sent, heartbeat)
                or now - sent_at >= self.heartbeat_idle_seconds
            ):
                self._enqueue(encode("heartbeat", heartbeat))
                sent, sent_at = heartbeat, now
            self._heartbeat_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heartbeat_now.wait(), TICK_SECONDS)

    # --- what the server says -----------------------------------------------------------------

    async def _receive(self, raw: str | bytes) -> None:
        try:
            envelope = decode(raw, SERVER_MESSAGES)
        except ProtocolError as exc:
            logger.warning("ignoring a malformed server message: %s", exc.message)
            return
        handler = self._handlers.get(envelope["type"])
        if handler is not None:
            await handler(self, envelope)

    async def _on_welcome(self, envelope: Envelope[Welcome]) -> None:
        data = envelope["data"]
        self.heartbeat_seconds = float(max(1, data["heartbeat_seconds"]))
        idle = data.get("heartbeat_idle_seconds", data["heartbeat_seconds"])
        self.heartbeat_idle_seconds = float(max(1, idle))
        self.usage_report_seconds = float(max(1, data["usage_report_seconds"]))
        self.connected_since = datetime.now(UTC).isoformat()
        self._welcomed_at = time.monotonic()
        self.last_error = ""
        logger.info(
            "connected to %s as host %s (heartbeat every %ss)",
            self.config.server,
            data["host_id"],
            data["heartbeat_seconds"],
        )
        await self.jobs.on_resume(data["keep_jobs"], data["kill_jobs"])
        for entry in self.outbox.pending():
            self._enqueue(encode(entry.type, entry.data, entry.id), force=True)
        self._welcomed.set()
        self._state_publish()

    async def _on_drain(self, envelope: Envelope[Drain]) -> None:
        is_draining = bool(envelope["data"]["is_draining"])
        if is_draining != self.is_server_draining:
            logger.info("the owner %s this host", "drained" if is_draining else "resumed")
        self.is_server_draining = is_draining
        self._state_publish()

    async def _on_policy(self, envelope: Envelope[AvailabilityPolicy]) -> None:
        self.policy = envelope["data"]
        await self._availability_refresh()

    async def _on_offer(self, envelope: Envelope[JobOffer]) -> None:
        offer = envelope["data"]
        refusal = self._offer_refusal()
        if refusal is not None:
            reason, code = refusal
            logger.info("rejecting job %s (%s): %s", offer["job_id"], code, reason)
            self.send("job.reject", reject(offer, reason, code))
            return
        await self.jobs.on_offer(offer)

    async def _on_cancel(self, envelope: Envelope[JobCancel]) -> None:
        await self.jobs.on_cancel(envelope["data"])

    async def _on_ack(self, envelope: Envelope[Any]) -> None:
        data = envelope["data"]
        if envelope["type"] == "ack":
            self.outbox.ack(data["ack_id"])
        elif envelope["type"] == "log.ack":
            self.outbox.log_ack(data["job_id"], data["attempt"], data["offset"])
        else:
            self.outbox.usage_ack(data["job_id"], data["attempt"], data["seq"])
        await self.jobs.on_ack(envelope["type"], data)

    async def _on_output_release(self, envelope: Envelope[OutputRelease]) -> None:
        """A released output of a pool job: read it from the pool's store, check it and upload
        it (agent/poolstore.py), off the event loop; the same release once at a time."""
        from agent.jobrunner.uploads import TusOutputUploader
        from agent.poolstore import pool_stores_from_config, release_carry

        release = envelope["data"]
        running = self._releases.get(release["release_id"])
        if running is not None and not running.done():
            return
        uploader = TusOutputUploader(
            self.config.server, self.config.credential, self.config.ca_bundle
        )
        task = asyncio.create_task(
            asyncio.to_thread(
                release_carry,
                pool_stores_from_config(self.config),
                release,
                uploader.release,
                self.config.work_dir,
            )
        )
        self._releases[release["release_id"]] = task
        task.add_done_callback(functools.partial(self._release_done, release["release_id"]))

    def _release_done(self, release_id: int, task: asyncio.Task[bool]) -> None:
        if self._releases.get(release_id) is task:
            del self._releases[release_id]

    async def _on_error(self, envelope: Envelope[Error]) -> None:
        data = envelope["data"]
        logger.warning(
            "the server refused %s: %s (%s)",
            data.get("ref_id", "a message"),
            data["message"],
            data["code"],
        )
        if "ref_id" in data:
            self.outbox.refuse(data["ref_id"], data["code"])

    _handlers: dict[str, Callable[[AgentClient, Envelope[Any]], Any]] = {
        "welcome": _on_welcome,
        "drain": _on_drain,
        "policy": _on_policy,
        "job.offer": _on_offer,
        "job.cancel": _on_cancel,
        "output.release": _on_output_release,
        "ack": _on_ack,
        "log.ack": _on_ack,
        "usage.ack": _on_ack,
        "error": _on_error,
    }

    # --- what the agent says ------------------------------------------------------------------

    async def _hello(self) -> Hello:
        specs = await asyncio.to_thread(self._specs_provider)
        disk = await asyncio.to_thread(self.jobs.host_disk)
        if disk is not None:
            specs["disk_quota"], specs["job_disk_mb"] = disk
        hello = Hello(
            agent_version=__version__,
            protocol_version=PROTOCOL_VERSION,
            specs=specs,
            running_jobs=self.jobs.running_jobs(),
            is_available=self.availability.is_available,
            is_draining=self.is_draining,
            slots=self.jobs.slots(),
            readiness=self._readiness(),
        )
        if self.config.install_id:
            hello["install_id"] = self.config.install_id
        return hello

    def _heartbeat(self) -> Heartbeat:
        return Heartbeat(
            load=round(self.monitor.total_load_percent / 100, 3),
            is_available=self.availability.is_available,
            unavailable_reason=self.availability.reason,
            running_jobs=self.jobs.running_jobs(),
            is_draining=self.is_draining,
            slots=self.jobs.slots(),
            readiness=self._readiness(),
        )

    def _readiness(self) -> Readiness:
        self._last_readiness = self.jobs.readiness()
        return self._last_readiness

    def _offer_refusal(self) -> tuple[str, RejectCode] | None:
        """Not now (never held against the job): draining or unavailable. What doesn't fit
        the free slots or the host is the job manager's to say."""
        if self.is_draining or self.is_server_draining:
            return "draining", "busy"
        if not self.availability.is_available:
            return f"unavailable: {self.availability.reason}", "busy"
        return None

    def _enqueue(self, text: str, *, force: bool = False) -> None:
        # Before the welcome only the session's own messages go out; the outbox is resent then.
        if self._queue is not None and (force or self._welcomed.is_set()):
            self._queue.put_nowait(text)

    # --- housekeeping every second ------------------------------------------------------------

    async def _ticker(self) -> None:
        next_check = 0.0
        while True:
            requested = {drain_requested(self.config.control_path), self._signal_drain()}
            self.drain("exit" if "exit" in requested else "drain" if "drain" in requested else None)
            if time.monotonic() >= next_check:
                await self._availability_refresh()
                next_check = time.monotonic() + AVAILABILITY_CHECK_SECONDS
            if self._last_readiness is not None and self.jobs.readiness() != self._last_readiness:
                self._heartbeat_now.set()  # ready or not: the server hears at once
            self._exit_if_drained()
            self._state_publish()
            await asyncio.sleep(TICK_SECONDS)

    async def _availability_refresh(self) -> None:
        jobs_running = bool(self.jobs.running_jobs())
        verdict = await asyncio.to_thread(
            self.monitor.check, self.policy, jobs_running=jobs_running
        )
        if verdict != self.availability:
            logger.info(
                "now %s", "available" if verdict.is_available else f"unavailable ({verdict.reason})"
            )
            self.availability = verdict
            self._heartbeat_now.set()

    def _exit_if_drained(self) -> None:
        if self._stop.is_set():
            return
        if self.drain_mode != "exit" or self.jobs.running_jobs():
            self._jobs_ended_at = None
            return
        now = time.monotonic()
        self._jobs_ended_at = self._jobs_ended_at or now
        if len(self.outbox) == 0 or now - self._jobs_ended_at > EXIT_OUTBOX_GRACE_SECONDS:
            if len(self.outbox):
                logger.warning("exiting with %d unacknowledged messages", len(self.outbox))
            logger.info("drained: no job runs, exiting")
            self.stop()

    # --- signals, state, TLS ------------------------------------------------------------------

    def _signals_install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self._on_signal)
            except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
                with contextlib.suppress(ValueError):
                    signal.signal(signum, lambda *_: loop.call_soon_threadsafe(self._on_signal))

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info("stop requested: draining (signal again to exit at once)")
            self.drain("exit")
        else:
            logger.info("stopping now")
            self.stop()

    def _signal_drain(self) -> DrainMode | None:
        return "exit" if self._signals else None

    def _state_publish(self, *, running: bool = True) -> None:
        state = {
            "pid": os.getpid(),
            "running": running,
            "agent_version": __version__,
            "server": self.config.server,
            "host_id": self.config.host_id,
            "connected": self._welcomed.is_set() and self._ws is not None,
            "connected_since": self.connected_since,
            "last_error": self.last_error,
            "is_available": self.availability.is_available,
            "unavailable_reason": self.availability.reason,
            "drain": self.drain_mode,
            "is_server_draining": self.is_server_draining,
            "running_jobs": self.jobs.running_jobs(),
            "slots": self.jobs.slots(),
            "readiness": self.jobs.readiness(),
            "unacknowledged": len(self.outbox),
        }
        if state == self._last_state:
            return
        self._last_state = state
        try:
            state_write(
                self.config.state_path, {**state, "updated_at": datetime.now(UTC).isoformat()}
            )
        except OSError as exc:
            logger.warning("cannot write %s: %s", self.config.state_path, exc)

    def _error(self, message: str) -> None:
        if message != self.last_error:
            logger.warning("%s", message)
        self.last_error = message

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.server.startswith("https://"):
            return None
        return ssl.create_default_context(cafile=self.config.ca_bundle or None)
