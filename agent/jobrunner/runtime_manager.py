"""The job manager backed by a runtime (agent/runtime/): the agent's side of running jobs.

It owns the attempts this host holds, from ``job.accept`` until the server acknowledged
``job.finished`` (they are listed in ``running_jobs`` all that time, which renews their
leases), and routes the server's acknowledgements, cancels and resume decisions to them.

It runs up to ``Capacity.slots`` attempts side by side, each within its own limits, and takes
an offer only when its cores, memory, GPUs and disk fit what the running attempts leave free:
an offer that doesn't fit now is rejected ``busy``, one that can never fit here ``refused``.
Disk is what the host's file system has free less a reserve and less what running attempts
may still write (their /work and /outputs limits less what their images already hold). It
checks the runtime (``readiness_check``) at start, every ``readiness_seconds`` and after each
host fault; while that finds a problem every offer is rejected ``host_fault``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.job_manager_protocol import AgentLink, RejectCode, reject
from agent.jobrunner.attempt import SERVER_BUDGET_REASON, AttemptRun, Need
from agent.jobrunner.offer import cap_from_offer, pool_refusal, spec_from_offer
from agent.jobrunner.options import RunnerOptions
from agent.jobrunner.threads import in_daemon_thread
from agent.jobrunner.uploads import OutputUploader
from agent.poolstore import PoolStores
from agent.protocol import (
    STALE_ATTEMPT_REASON_PREFIX,
    JobCancel,
    JobOffer,
    Readiness,
    RunningJobRef,
)
from agent.runtime import quota
from agent.runtime.blobcache import BlobCache
from agent.runtime.files import attempt_dir_path
from agent.runtime.types import JobSpec, JobSpecError, Runtime

logger = logging.getLogger("agent.jobs")

AT_CAPACITY_REASON = "at capacity: every slot of this host is taken"
NOT_READY_REASON = "the host is not ready to run jobs"
NOT_CHECKED_READINESS = "the runtime has not been checked yet"
READINESS_TIMEOUT_SECONDS = 120.0
# The first check must not hold up the first connection (pulling a missing image takes long):
# past this it goes on in the background and the host says it is not ready meanwhile.
START_READINESS_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Capacity:
    """What the host gives its jobs together (the defaults: one slot, no resource limit)."""

    slots: int = 1
    cpus: float = math.inf
    memory_mb: float = math.inf
    gpus: float = math.inf
    # Where attempts write (None: disk is not counted). Jobs never get the last
    # ``disk_reserve_mb`` of it; one job gets at most ``job_disk_max_mb`` (0: a share of the
    # free disk less the reserve, one slot's worth).
    work_root: Path | None = None
    disk_reserve_mb: int = 1024
    job_disk_max_mb: int = 0


Key = tuple[int, int]


def _key(ref: RunningJobRef | JobCancel | JobOffer | dict[str, Any]) -> Key:
    return (int(ref["job_id"]), int(ref["attempt"]))


def _ref(key: Key) -> RunningJobRef:
    return RunningJobRef(job_id=key[0], attempt=key[1])


class RuntimeJobManager:
    def __init__(
        self,
        runtime: Runtime,
        *,
        uploader: OutputUploader,
        capacity: Capacity | None = None,
        options: RunnerOptions | None = None,
        blob_cache: BlobCache | None = None,
        pool_stores: PoolStores | None = None,
    ) -> None:
        self.runtime = runtime
        self.uploader = uploader
        self.blob_cache = blob_cache
        self.pool_stores = pool_stores or PoolStores()
        self.capacity = capacity or Capacity()
        self.options = options or RunnerOptions()
        # "" ready; otherwise why not (the runtime's words, for the owner).
        self.not_ready_reason = NOT_CHECKED_READINESS
        self._recheck = asyncio.Event()
        self.attempts: dict[Key, AttemptRun] = {}
        # Run containers of an earlier agent process, reported in hello; the welcome decides.
        self.orphans: set[Key] = set()
        self._link: AgentLink | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def link(self) -> AgentLink:
        assert self._link is not None, "start() first"
        return self._link

    # --- JobManager -----------------------------------------------------------------------

    async def start(self, link: AgentLink) -> None:
        self._link = link
        if await self.readiness_refresh(START_READINESS_TIMEOUT_SECONDS) == self._timed_out(
            START_READINESS_TIMEOUT_SECONDS
        ):
            self._recheck.set()  # at once, with the longer timeout
        self._spawn(self._readiness_loop())
        try:
            owned = await asyncio.to_thread(self.runtime.list_own)
        except Exception as exc:
            logger.error("cannot list the containers of an earlier run: %s", exc)
            owned = []
        runs = {(o.job_id, o.attempt) for o in owned if o.role == "run"}
        installs = {(o.job_id, o.attempt) for o in owned if o.role == "install"} - runs
        for key in sorted(installs):
            # An install cut short can't be resumed (the offer is gone): let the server requeue.
            logger.info("removing the unfinished install of job %s attempt %s", *key)
            await self._runtime_kill(key)
        self.orphans = runs
        if runs:
            logger.info("found %d job container(s) of an earlier run: asking the server", len(runs))

    def running_jobs(self) -> list[RunningJobRef]:
        held = set(self.attempts) | self.orphans
        return [_ref(key) for key in sorted(held)]

    def slots_used(self) -> int:
        return len(self._holding()) + len(self.orphans)

    def slots(self) -> int:
        return self.capacity.slots

    def readiness(self) -> Readiness:
        return Readiness(
            ready=not self.not_ready_reason,
            reason=self.not_ready_reason[:2000],
            isolation=self.runtime.isolation,
        )

    def host_disk(self) -> tuple[bool, int] | None:
        """(quotas enforced, most disk one job may ask for, MB) for hello; None when disk is
        not counted here."""
        job_disk_mb = self._job_disk_mb()
        if job_disk_mb is None:
            return None
        return self.runtime.disk_quota_active(), job_disk_mb

    def in_use(self) -> Need:
        """The cores, memory and GPUs the attempts that hold a slot reserved."""
        needs = [run.need() for run in self._holding()]
        return Need(
            cpus=sum(need.cpus for need in needs),
            memory_mb=sum(need.memory_mb for need in needs),
            gpus=sum(need.gpus for need in needs),
        )

    async def on_offer(self, offer: JobOffer) -> None:
        key = _key(offer)
        if key in self.attempts:
            return  # an offer sent again after a reconnect; the accept is in the outbox
        try:
            spec = spec_from_offer(offer)
        except JobSpecError as exc:
            self._reject(offer, str(exc), "refused")
            return
        misfit = self._misfit(spec)
        if misfit:
            self._reject(offer, misfit, "refused")
            return
        if self.not_ready_reason:
            self._reject(offer, NOT_READY_REASON, "host_fault")
            return
        busy = self._busy(spec)
        if busy:
            self._reject(offer, busy, "busy")
            return
        run = self._run_new(key, spec=spec, cap=cap_from_offer(offer), pool=offer.get("pool"))
        self.link.send("job.accept", _ref(key))
        logger.info("accepted job %s attempt %s", *key)
        run.task = self._spawn(self._lifetime(run, run.run_fresh))

    async def on_cancel(self, cancel: JobCancel) -> None:
        key = _key(cancel)
        run = self.attempts.get(key)
        if cancel["reason"].startswith(STALE_ATTEMPT_REASON_PREFIX):
            # The server no longer runs it here: nothing to report, only a container to remove.
            if run is not None or key in self.orphans:
                logger.info("job %s attempt %s: %s", *key, cancel["reason"])
                self._spawn(self._kill(key))
            return
        if run is None:
            return
        run.request_stop(
            "cancelled", cancel["reason"] or "cancelled", self.options.cancel_grace_seconds
        )

    async def on_resume(self, keep: list[RunningJobRef], kill: list[RunningJobRef]) -> None:
        for ref in kill:
            logger.info("the server has no job %s attempt %s here: removing it", *_key(ref))
            self._spawn(self._kill(_key(ref)))
        for ref in keep:
            key = _key(ref)
            if key in self.orphans and key not in self.attempts:
                self.orphans.discard(key)
                run = self._run_new(key)
                run.task = self._spawn(self._lifetime(run, functools.partial(self._attached, run)))

    async def on_ack(self, message_type: str, data: Any) -> None:
        if message_type == "ack":
            for held in self.attempts.values():
                if held.on_ack(str(data["ack_id"])):
                    return
            return
        run = self.attempts.get(_key(data))
        if run is None:
            return
        if message_type == "log.ack":
            run.on_log_ack(int(data["offset"]))
        elif message_type == "usage.ack" and data.get("stop"):
            run.request_stop(
                "budget_exhausted", SERVER_BUDGET_REASON, self.options.budget_grace_seconds
            )

    async def stop(self) -> None:
        """The agent exits; containers keep running and are found again on the next start."""
        for run in self.attempts.values():
            run.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)

    # --- readiness ------------------------------------------------------------------------

    async def readiness_refresh(self, limit_seconds: float = READINESS_TIMEOUT_SECONDS) -> str:
        """Check the runtime now; "" when ready. A check that fails or hangs is a problem too."""
        try:
            reason = await asyncio.wait_for(
                in_daemon_thread(self.runtime.readiness_check, name="readiness"), limit_seconds
            )
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            reason = self._timed_out(limit_seconds)
        except Exception as exc:
            reason = f"the runtime's self-check failed: {type(exc).__name__}: {exc}"
        if reason != self.not_ready_reason:
            if reason:
                logger.warning("not ready to run jobs: %s", reason)
            else:
                logger.info("ready to run jobs (%s isolation)", self.runtime.isolation)
        self.not_ready_reason = reason
        return reason

    @staticmethod
    def _timed_out(timeout: float) -> str:
        return f"the runtime's self-check did not answer in {timeout:g} s"

    def host_fault_seen(self) -> None:
        """An attempt failed on the host's side: check the runtime again at once."""
        self._recheck.set()

    async def _readiness_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recheck.wait(), self.options.readiness_seconds)
            self._recheck.clear()
            await self.readiness_refresh()

    # --- capacity -------------------------------------------------------------------------

    def _holding(self) -> list[AttemptRun]:
        return [run for run in self.attempts.values() if run.phase not in ("finishing", "done")]

    def _misfit(self, spec: JobSpec) -> str:
        """Why the job can never run on this host (more than the whole machine), or ""."""
        whole = self.capacity
        if spec.cpus > whole.cpus + 1e-9:
            return f"the job needs {spec.cpus:g} cores; this host has {whole.cpus:g}"
        if spec.memory_mb > whole.memory_mb:
            return f"the job needs {spec.memory_mb} MB of memory; this host has {whole.memory_mb:g}"
        if spec.gpus > whole.gpus:
            return f"the job needs {spec.gpus} GPUs; this host has {whole.gpus:g}"
        allowed = self._job_disk_mb()
        if allowed is not None and spec.disk.host_disk_mb > allowed:
            return f"the job needs {spec.disk.host_disk_mb} MB of disk; the host allows {allowed}"
        return pool_refusal(spec, self.blob_cache, self.runtime)

    def _busy(self, spec: JobSpec) -> str:
        """Why the job doesn't fit next to the running attempts now, or ""."""
        if self.slots_used() >= self.capacity.slots:
            return AT_CAPACITY_REASON
        used, whole = self.in_use(), self.capacity
        if used.cpus + spec.cpus > whole.cpus + 1e-9:
            return f"busy: {whole.cpus - used.cpus:g} of {whole.cpus:g} cores free"
        if used.memory_mb + spec.memory_mb > whole.memory_mb:
            return f"busy: {whole.memory_mb - used.memory_mb:g} MB of memory free"
        if used.gpus + spec.gpus > whole.gpus:
            return f"busy: {whole.gpus - used.gpus:g} GPUs free"
        free = self._disk_free_for_jobs_mb()
        need = spec.disk.host_disk_mb
        if free is not None and need > free:
            return f"busy: {max(free, 0)} MB of disk free for jobs; the job needs {need} MB"
        return ""

    def _disk_free_for_jobs_mb(self) -> int | None:
        """The host's free disk less the reserve and less what holding attempts may still
        write; None when disk is not counted (no work root)."""
        root = self.capacity.work_root
        if root is None:
            return None
        free = _disk_free_mb(root) - self.capacity.disk_reserve_mb
        holding = {_key(run.ref): run for run in self._holding()}
        for key in sorted(set(holding) | self.orphans):
            run = holding.get(key)
            disk = run.spec.disk if run is not None and run.spec is not None else None
            free -= quota.outstanding_mb(attempt_dir_path(root, *key), disk)
        return free

    def _job_disk_mb(self) -> int | None:
        """The most disk one job may ask for: the owner's setting within what is free, or a
        slot's share of the free disk less the reserve."""
        root = self.capacity.work_root
        if root is None:
            return None
        available = max(0, _disk_free_mb(root) - self.capacity.disk_reserve_mb)
        if self.capacity.job_disk_max_mb > 0:
            return min(self.capacity.job_disk_max_mb, available)
        return available // max(self.capacity.slots, 1)

    # --- helpers --------------------------------------------------------------------------

    def _run_new(self, key: Key, **extra: Any) -> AttemptRun:
        run = AttemptRun(
            ref=_ref(key),
            runtime=self.runtime,
            link=self.link,
            uploader=self.uploader,
            options=self.options,
            on_host_fault=self.host_fault_seen,
            blob_cache=self.blob_cache,
            pool_stores=self.pool_stores,
            **extra,
        )
        self.attempts[key] = run
        return run

    async def _lifetime(self, run: AttemptRun, work: Callable[[], Awaitable[Any]]) -> None:
        try:
            await work()
        finally:
            if self.attempts.get(_key(run.ref)) is run and not run.is_closed:
                del self.attempts[_key(run.ref)]

    async def _attached(self, run: AttemptRun) -> None:
        try:
            found = await run.run_attached()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("job %s attempt %s: re-attaching failed", run.job_id, run.attempt)
            found = False
        if not found:
            # Not reported any more: the server loses the attempt and runs the job again.
            logger.warning("job %s attempt %s: its container is gone", run.job_id, run.attempt)

    async def _kill(self, key: Key) -> None:
        self.orphans.discard(key)
        run = self.attempts.pop(key, None)
        if run is not None:
            await run.kill()
            return
        await self._runtime_kill(key)

    async def _runtime_kill(self, key: Key) -> None:
        try:
            await in_daemon_thread(self.runtime.kill, *key)
        except Exception as exc:
            logger.warning("cannot remove job %s attempt %s: %s", *key, exc)

    def _reject(self, offer: JobOffer, reason: str, code: RejectCode) -> None:
        logger.info("rejecting job %s attempt %s (%s): %s", *_key(offer), code, reason)
        self.link.send("job.reject", reject(offer, reason, code))

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _disk_free_mb(directory: Path) -> int:
    """Free disk (MB) where ``directory`` is, or its nearest existing parent."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free // quota.MB
    return 0
