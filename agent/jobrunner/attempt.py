"""One attempt on this host, from ``job.accept`` to the acknowledged ``job.finished``.

A fresh attempt: ``job.started preparing`` -> install step -> inputs fetched (into the host's
blob cache) and linked, the code archive unpacked -> start -> ``job.started running``
-> logs, usage and the local cap while it runs -> outputs uploaded -> final usage and
``job.finished`` (resent until acknowledged) -> cleanup. An attempt found again after an agent
restart (``attach``) joins the same path at "running". Blocking runtime calls run in threads;
nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from agent.job_manager_protocol import AgentLink
from agent.jobrunner.logs import LogKept, LogOutbound
from agent.jobrunner.offer import CostCap
from agent.jobrunner.options import RunnerOptions
from agent.jobrunner.state import AttemptState, state_read, state_write
from agent.jobrunner.threads import in_daemon_thread
from agent.jobrunner.uploads import OutputUploader, output_keep, output_upload
from agent.jobrunner.usage import UsageMeter
from agent.poolstore import PoolStores
from agent.protocol import JobFinished, JobLog, PoolRef, RunningJobRef, pool_object_key
from agent.protocol import OutputFile as WireOutput
from agent.runtime.blobcache import BlobCache, FetchCancelled
from agent.runtime.inputs import inputs_place
from agent.runtime.reasons import (
    HOST_AGENT_REASON,
    HOST_DISK_REASON,
    HOST_LOST_REASON,
    HOST_PREPARE_REASON,
    HOST_START_REASON,
)
from agent.runtime.types import (
    Handle,
    JobSpec,
    Outcome,
    OutputFile,
    Prepared,
    Runtime,
    StopStatus,
    host_fault,
)

CANCELLED_WHILE_FETCHING = "cancelled while its inputs were fetched"

logger = logging.getLogger("agent.jobs")

Phase = Literal["accepted", "preparing", "running", "finishing", "done"]
BUDGET_REASON = "budget exhausted: the job's cost cap is reached"
SERVER_BUDGET_REASON = "budget exhausted: the server stopped the job at its cost cap"


@dataclass(frozen=True)
class Need:
    """What an attempt reserved of the host: cores, memory, GPUs."""

    cpus: float
    memory_mb: int
    gpus: int


def _sha256_of(path: Any) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


class AttemptClosed(Exception):
    """The attempt was killed (stale) while a runtime call was under way."""


def _engine_fault(reason: str, exc: BaseException) -> Outcome:
    """A runtime call failed: the host's fault. A full disk says so; the engine's words are
    the detail, never the renter's reason."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        reason = HOST_DISK_REASON
    return host_fault(reason, f"{type(exc).__name__}: {exc}")


class AttemptRun:
    """The agent's side of one attempt. The manager routes acks and cancels to it."""

    def __init__(
        self,
        *,
        ref: RunningJobRef,
        runtime: Runtime,
        link: AgentLink,
        uploader: OutputUploader,
        options: RunnerOptions,
        spec: JobSpec | None = None,
        cap: CostCap | None = None,
        on_host_fault: Callable[[], None] | None = None,
        blob_cache: BlobCache | None = None,
        pool: PoolRef | None = None,
        pool_stores: PoolStores | None = None,
    ) -> None:
        self.ref = ref
        self.blob_cache = blob_cache
        self.job_id, self.attempt = ref["job_id"], ref["attempt"]
        self.runtime = runtime
        self.link = link
        self.uploader = uploader
        self.options = options
        self.spec = spec
        self.cap = cap
        self.gpus = spec.gpus if spec is not None else 0
        self._on_host_fault = on_host_fault
        self.phase: Phase = "accepted"
        self.handle: Handle | None = None
        self.meter = UsageMeter(self.job_id, self.attempt, self.gpus, started_at=time.monotonic())
        self.log = LogOutbound(
            chunk_bytes=options.log_chunk_bytes, window_bytes=options.log_window_bytes
        )
        # The private pool the job runs in (docs/pools.md): where its outputs and log go.
        self.pool = pool
        self.pool_stores = pool_stores or PoolStores()
        self.log_kept: LogKept | None = None
        self.stop_requested: tuple[StopStatus, str] | None = None
        self.is_closed = False  # killed or the agent is exiting: send nothing more
        self.task: asyncio.Task[None] | None = None
        self._log_room = asyncio.Event()
        self._log_lock = asyncio.Lock()
        self._log_flush_task: asyncio.Task[None] | None = None
        self._log_last_progress = time.monotonic()
        self._log_last_raw = time.monotonic()
        self._log_waiting = False
        self._finished_ids: set[str] = set()
        self._finished_acked = asyncio.Event()
        self._final: tuple[Any, JobFinished] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()

    def need(self) -> Need:
        """The cores, memory and GPUs this attempt reserved (from its offer, or after a
        restart from its state file; unknown: nothing)."""
        if self.spec is not None:
            return Need(self.spec.cpus, self.spec.memory_mb, self.spec.gpus)
        if self.cap is not None:
            reservation = self.cap.reservation
            return Need(float(reservation.cpus), reservation.memory_mb, reservation.gpus)
        return Need(0.0, 0, self.gpus)

    # --- the whole life -------------------------------------------------------------------

    async def run_fresh(self) -> None:
        """From accepted to done (job.accept was sent by the manager)."""
        assert self.spec is not None
        try:
            await self._prepare_and_run(self.spec)
        except asyncio.CancelledError:
            raise
        except AttemptClosed:
            return
        except Exception as exc:  # a bug or the engine failing: the job must still end
            logger.exception("job %s attempt %s failed in the agent", self.job_id, self.attempt)
            if self.phase not in ("finishing", "done") and not self.is_closed:
                await self._finish(_engine_fault(HOST_AGENT_REASON, exc))

    async def run_attached(self) -> bool:
        """Carry on with a container an earlier agent process started; False when it is gone."""
        try:
            handle = await in_daemon_thread(self.runtime.attach, self.job_id, self.attempt)
        except LookupError:
            return False
        state = await asyncio.to_thread(state_read, handle.attempt_dir)
        if state is not None:
            self.gpus, self.cap, self.pool = state.gpus, state.cap, state.pool
        self.meter = UsageMeter(
            self.job_id,
            self.attempt,
            self.gpus,
            started_at=handle.deadline - handle.timeout_seconds,
            seq=state.seq if state else 0,
            cpu_seconds=state.cpu_seconds if state else 0.0,
            wall_seconds=state.wall_seconds if state else 0.0,
            reported_wall_seconds=state.wall_seconds if state else 0.0,
            memory_peak_mb=state.memory_peak_mb if state else 0,
        )
        # The server may hold part of the log already: its first log.ack says how much.
        self.log = LogOutbound(
            chunk_bytes=self.options.log_chunk_bytes,
            window_bytes=self.options.log_window_bytes,
            probing=True,
        )
        self._log_kept_open()  # the container's log is read again from its start
        self.handle = handle
        self.phase = "running"
        self._send("job.started", {**self.ref, "phase": "running"})
        logger.info("job %s attempt %s: re-attached after a restart", self.job_id, self.attempt)
        await self._supervise(handle)
        return True

    async def _prepare_and_run(self, spec: JobSpec) -> None:
        if self.stop_requested is not None:  # cancelled before anything began
            await self._finish(Outcome(*self.stop_requested))
            return
        problem = self.pool_stores.problem(self.pool)
        if problem:  # before anything runs: the outputs would have nowhere to go
            await self._finish(host_fault(problem, problem))
            return
        self._log_kept_open()
        self.phase = "preparing"
        self._send("job.started", {**self.ref, "phase": "preparing"})
        try:
            prepared = await in_daemon_thread(self._prepare_unless_closed, spec)
        except AttemptClosed:
            return
        except Exception as exc:
            await self._discard()
            await self._finish(_engine_fault(HOST_PREPARE_REASON, exc))
            return
        if self.stop_requested is not None:
            await self._discard()
            await self._finish(Outcome(*self.stop_requested))
            return
        if prepared.failure is not None:
            if prepared.failure.fault != "host":  # the host's pip output is not the renter's
                await self._log_feed(prepared.install_log, end=True)
            await self._finish(prepared.failure)
            return
        await asyncio.to_thread(state_write, prepared.attempt_dir, self._state())
        try:
            handle = await in_daemon_thread(self._start_unless_closed, prepared)
        except AttemptClosed:
            return
        except Exception as exc:
            await self._discard()
            await self._finish(_engine_fault(HOST_START_REASON, exc))
            return
        self.handle = handle
        self.meter.started_at = handle.deadline - handle.timeout_seconds
        self.phase = "running"
        self._send("job.started", {**self.ref, "phase": "running"})
        if self.cap is not None:
            logger.info(
                "job %s attempt %s running; at full use its cap allows %s s",
                self.job_id,
                self.attempt,
                self.cap.seconds_at_full_use,
            )
        if self.stop_requested is not None:  # cancelled while starting
            self._spawn(self._runtime_stop(*self.stop_requested))
        await self._supervise(handle)

    async def _supervise(self, handle: Handle) -> None:
        pump = asyncio.create_task(self._log_pump(handle))
        sampler = asyncio.create_task(self._usage_loop(handle))
        try:
            try:
                outcome = await in_daemon_thread(self.runtime.wait, handle)
            except Exception as exc:
                outcome = _engine_fault(HOST_LOST_REASON, exc)
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            with contextlib.suppress(Exception):
                await self._sample(handle)
            await self._log_drain(pump)
        finally:
            sampler.cancel()
            pump.cancel()
        await self._finish(outcome, handle)

    # These run in the runtime's thread. A kill (stale attempt) that came while the call was
    # under way has found nothing to remove yet: what the call made is removed here, at once.
    # (kill() closes first and removes second, so either it or this sees the container.)

    def _prepare_unless_closed(self, spec: JobSpec) -> Prepared:
        prepared = self.runtime.prepare(spec)
        if prepared.failure is None and not self.is_closed:
            prepared = self._inputs_place(prepared)
        if self.is_closed:
            self.runtime.kill(self.job_id, self.attempt)
            raise AttemptClosed
        return prepared

    def _inputs_place(self, prepared: Prepared) -> Prepared:
        """Fetch and link the inputs, unpack the code archive (in "preparing": not billed). A
        failure becomes the Prepared's failure; a cancel ends the fetch at its next read."""
        try:
            failure = inputs_place(
                prepared.attempt_dir,
                prepared.spec,
                self.blob_cache,
                is_cancelled=lambda: self.is_closed or self.stop_requested is not None,
            )
        except FetchCancelled:
            failure = Outcome("cancelled", CANCELLED_WHILE_FETCHING)
        if failure is None:
            return prepared
        return Prepared(
            prepared.spec, prepared.attempt_dir, prepared.env_ref, prepared.install_log, failure
        )

    def _start_unless_closed(self, prepared: Prepared) -> Handle:
        handle = self.runtime.start(prepared)
        if self.is_closed:
            self.runtime.kill(self.job_id, self.attempt)
            raise AttemptClosed
        return handle

    # --- stopping -------------------------------------------------------------------------

    def request_stop(self, status: StopStatus, reason: str, grace_seconds: float) -> None:
        """Cancel or budget stop: the run ends with this status (first request wins)."""
        if self.stop_requested is not None or self.phase in ("finishing", "done"):
            return
        self.stop_requested = (status, reason)
        logger.info("job %s attempt %s: stopping (%s)", self.job_id, self.attempt, reason)
        if self.phase == "running" and self.handle is not None:
            self._spawn(self._runtime_stop(status, reason, grace_seconds))
        elif self.phase == "preparing":
            # Removing the install container ends pip at once; prepare then returns a failure
            # and the attempt ends with the requested status.
            self._spawn(self._discard())

    async def _runtime_stop(
        self, status: StopStatus, reason: str, grace_seconds: float | None = None
    ) -> None:
        handle = self.handle
        assert handle is not None
        grace = self.options.cancel_grace_seconds if grace_seconds is None else grace_seconds

        def stop() -> None:
            self.runtime.cancel(handle, grace, status=status, reason=reason)

        try:
            await in_daemon_thread(stop)
        except Exception as exc:
            logger.warning("job %s: stopping the container failed: %s", self.job_id, exc)

    async def kill(self) -> None:
        """The server does not want this attempt any more: stop everything, report nothing."""
        self.close()
        with contextlib.suppress(Exception):
            await in_daemon_thread(self.runtime.kill, self.job_id, self.attempt)
        self.phase = "done"

    def close(self) -> None:
        """Stop this process's work on the attempt; the container is left as it is."""
        self.is_closed = True
        for task in [self.task, self._log_flush_task, *self._side_tasks]:
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._log_room.set()

    # --- acknowledgements -----------------------------------------------------------------

    def on_log_ack(self, offset: int) -> None:
        if self.log.ack(offset):
            self._log_last_progress = time.monotonic()
            self._log_room.set()

    def on_ack(self, ack_id: str) -> bool:
        if ack_id in self._finished_ids:
            self._finished_acked.set()
            return True
        return False

    # --- logs -----------------------------------------------------------------------------

    async def _log_pump(self, handle: Handle) -> None:
        loop = asyncio.get_running_loop()

        def read() -> None:
            for raw in self.runtime.logs(handle):
                if self.is_closed:
                    return
                try:
                    asyncio.run_coroutine_threadsafe(self._log_feed(raw), loop).result()
                except BaseException:  # the loop is gone or the attempt was cancelled
                    return

        try:
            await in_daemon_thread(read, name=f"logs-{self.job_id}-{self.attempt}")
        except Exception as exc:  # the engine failed; the exit status still comes from wait
            logger.warning("job %s: reading the log failed: %s", self.job_id, exc)
        await self._log_feed(b"", end=True)

    def _log_kept_open(self) -> None:
        """A pool that keeps logs off the server: spool ("store") or count ("redacted")."""
        if self.pool is not None and self.pool["logs"] != "central" and self.log_kept is None:
            self.log_kept = LogKept(self.pool["logs"])

    async def _log_feed(self, raw: bytes, *, end: bool = False) -> None:
        """Take output from the runtime; returns once it is sent or fits the window."""
        self._log_last_raw = time.monotonic()
        if self.log_kept is not None:  # no job.log: the server gets the size only
            self.log_kept.feed(raw)
            if end:
                self.log_kept.feed_end()
            return
        if end:
            self.log.feed(raw)
            self.log.feed_end()
        else:
            self.log.feed(raw)
        await self._log_push(flush=end)
        if not end and self.log.pending_bytes and self._log_flush_task is None:
            self._log_flush_task = asyncio.create_task(self._log_flush_later())

    async def _log_flush_later(self) -> None:
        try:
            await asyncio.sleep(self.options.log_flush_seconds)
            await self._log_push(flush=True)
        finally:
            self._log_flush_task = None

    async def _log_push(self, *, flush: bool) -> None:
        async with self._log_lock:
            while not self.is_closed:
                for offset, text in self.log.take_ready(flush=flush):
                    self._send("job.log", JobLog(**self.ref, offset=offset, data=text))
                if not self.log.is_blocked(flush=flush):
                    return
                self._log_room.clear()
                self._log_waiting = True
                try:
                    await self._log_room.wait()
                finally:
                    self._log_waiting = False

    def _log_resend_if_stalled(self, now: float) -> None:
        """Acknowledgements stopped (a refused or lost chunk): send again from the server's
        offset. Only while connected; after a reconnect the outbox resends on its own."""
        if self.log.in_flight <= 0 or not self.link.is_connected:
            return
        if now - self._log_last_progress < self.options.log_resend_seconds:
            return
        self._log_last_progress = now
        for offset, text in self.log.unacknowledged():
            self._send("job.log", JobLog(**self.ref, offset=offset, data=text))

    async def _log_drain(self, pump: asyncio.Task[None]) -> None:
        """Wait for the rest of the log after the exit. A stream that stays silent (a process
        that left a child holding the pipe) is given up after ``log_drain_seconds``; one
        that waits for acknowledgements is not."""
        while not pump.done():
            await asyncio.wait({pump}, timeout=min(0.5, self.options.log_drain_seconds))
            self._log_resend_if_stalled(time.monotonic())
            silent = time.monotonic() - self._log_last_raw
            if not self._log_waiting and silent > self.options.log_drain_seconds:
                logger.warning("job %s: the log stream did not end; not waiting", self.job_id)
                pump.cancel()
                await self._log_push(flush=True)
                return

    # --- usage and the local cap ----------------------------------------------------------

    async def _usage_loop(self, handle: Handle) -> None:
        next_report = time.monotonic() + self.link.usage_report_seconds
        while True:
            try:
                next_report = await self._usage_tick(handle, next_report)
            except Exception:  # one bad sample must not end metering or the local cap
                logger.exception("job %s: sampling usage failed", self.job_id)
            await asyncio.sleep(self.options.sample_seconds)

    async def _usage_tick(self, handle: Handle, next_report: float) -> float:
        await self._sample(handle)
        now = time.monotonic()
        if self.cap is not None and self.cap.is_reached(
            self.meter.cpu_seconds, self.meter.wall_seconds
        ):
            self.request_stop("budget_exhausted", BUDGET_REASON, self.options.budget_grace_seconds)
        if now >= next_report:
            await self._usage_send()
            next_report = now + self.link.usage_report_seconds
        self._log_resend_if_stalled(now)
        return next_report

    async def _sample(self, handle: Handle) -> None:
        sample = await asyncio.to_thread(self.runtime.usage, handle)
        self.meter.observe(sample, time.monotonic())

    async def _usage_send(self, *, is_final: bool = False) -> Any:
        report = self.meter.report(is_final=is_final)
        if self.handle is not None:  # the seq survives a restart of the agent
            await asyncio.to_thread(state_write, self.handle.attempt_dir, self._state())
        self._send("job.usage", report)
        return report

    def _state(self) -> AttemptState:
        return AttemptState(
            self.meter.seq,
            self.meter.memory_peak_mb,
            self.gpus,
            self.cap,
            cpu_seconds=self.meter.cpu_seconds,
            wall_seconds=self.meter.reported_wall_seconds,
            pool=self.pool,
        )

    # --- the end --------------------------------------------------------------------------

    async def _finish(self, outcome: Outcome, handle: Handle | None = None) -> None:
        self.phase = "finishing"
        outputs = await self._outputs_upload(handle) if handle is not None else []
        log_bytes = await self._log_kept_close()
        final = await self._usage_send(is_final=True)
        finished = JobFinished(
            job_id=self.job_id,
            attempt=self.attempt,
            status=outcome.status,
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            outputs=outputs,
            usage=final,
            log_bytes=self.log.produced if log_bytes is None else log_bytes,
        )
        if outcome.fault == "host" and outcome.status == "failed":
            finished["fault"] = "host"
            finished["detail"] = outcome.detail
            logger.warning(
                "job %s attempt %s: a host fault: %s", self.job_id, self.attempt, outcome.detail
            )
            if self._on_host_fault is not None:
                self._on_host_fault()
        self._final = (final, finished)
        logger.info(
            "job %s attempt %s finished: %s (%s)",
            self.job_id,
            self.attempt,
            outcome.status,
            outcome.reason,
        )
        self._finished_ids.add(self._send("job.finished", finished))
        await self._finished_ack_wait()
        await self._cleanup(handle)

    async def _finished_ack_wait(self) -> None:
        """job.finished stays in the outbox (resent on reconnect); while connected it is also
        sent again every ``final_resend_seconds`` until acknowledged."""
        connected_for = 0.0
        while not self._finished_acked.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._finished_acked.wait(), self.options.final_resend_seconds
                )
                return
            if not self.link.is_connected or self._final is None:
                continue
            connected_for += self.options.final_resend_seconds
            if connected_for >= self.options.finish_give_up_seconds:
                logger.error("job %s: job.finished was never acknowledged", self.job_id)
                return
            final, finished = self._final
            self._send("job.usage", final)
            self._finished_ids.add(self._send("job.finished", finished))

    async def _outputs_upload(self, handle: Handle) -> list[WireOutput]:
        try:
            files = await asyncio.to_thread(self.runtime.collect_outputs, handle)
        except OSError as exc:
            logger.warning("job %s: cannot collect outputs: %s", self.job_id, exc)
            return []
        store = self.pool.get("output_store") if self.pool is not None else None
        uploaded = []
        for output in files:
            if store is not None and self.pool is not None:
                # The pool keeps its outputs: to its store, the server told only the digest.
                key = pool_object_key(store["prefix"], self.job_id, self.attempt, output.name)
                if await output_keep(
                    self.pool_stores, self.pool["id"], store, key, output, self.options
                ):
                    uploaded.append(
                        WireOutput(
                            name=output.name,
                            size=output.size,
                            sha256=output.sha256,
                            location="pool",
                        )
                    )
            elif await output_upload(self.uploader, self.ref, output, self.options):
                uploaded.append(
                    WireOutput(name=output.name, size=output.size, sha256=output.sha256)
                )
        return uploaded

    async def _log_kept_close(self) -> int | None:
        """The size of a log kept off the server (None: the log went to the server), after
        writing it to the pool's store where the pool says "store"."""
        kept = self.log_kept
        if kept is None:
            return None
        self.log_kept = None
        try:
            store = self.pool.get("output_store") if self.pool is not None else None
            if kept.mode == "store" and kept.path is not None and self.pool is not None:
                if store is None:
                    logger.warning("job %s: the pool keeps logs but names no store", self.job_id)
                else:
                    kept.feed_end()
                    key = pool_object_key(store["prefix"], self.job_id, self.attempt, "")
                    log = OutputFile("log", kept.produced, _sha256_of(kept.path), kept.path)
                    await output_keep(
                        self.pool_stores, self.pool["id"], store, key, log, self.options
                    )
            return kept.produced
        finally:
            kept.close()

    async def _discard(self) -> None:
        """Remove what prepare left (the attempt directory; no container ran)."""
        with contextlib.suppress(Exception):
            await in_daemon_thread(self.runtime.kill, self.job_id, self.attempt)

    async def _cleanup(self, handle: Handle | None) -> None:
        try:
            if handle is not None:
                await in_daemon_thread(self.runtime.cleanup, handle)
            else:
                await in_daemon_thread(self.runtime.kill, self.job_id, self.attempt)
        except Exception as exc:
            logger.warning("job %s: cleanup failed: %s", self.job_id, exc)
        self.phase = "done"

    # --- helpers --------------------------------------------------------------------------

    def _send(self, message_type: str, data: Any) -> str:
        if self.is_closed:
            return ""
        return self.link.send(message_type, data)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
