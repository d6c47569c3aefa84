"""The job manager backed by a runtime (agent/runtime/): the agent's side of running jobs.

It owns the attempts this host holds, from ``job.accept`` until the server acknowledged
``job.finished`` (they are listed in ``running_jobs`` all that time, which renews their
leases), and routes the server's acknowledgements, cancels and resume decisions to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent.job_manager_protocol import AgentLink
from agent.jobrunner.attempt import SERVER_BUDGET_REASON, AttemptRun
from agent.jobrunner.offer import cap_from_offer, spec_from_offer
from agent.jobrunner.options import RunnerOptions
from agent.jobrunner.threads import in_daemon_thread
from agent.jobrunner.uploads import OutputUploader
from agent.protocol import STALE_ATTEMPT_REASON_PREFIX, JobCancel, JobOffer, RunningJobRef
from agent.runtime.types import JobSpecError, Runtime

logger = logging.getLogger("agent.jobs")

AT_CAPACITY_REASON = "at capacity"

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
        max_concurrent_jobs: int = 1,
        options: RunnerOptions | None = None,
    ) -> None:
        self.runtime = runtime
        self.uploader = uploader
        self.max_concurrent_jobs = max_concurrent_jobs
        self.options = options or RunnerOptions()
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
        busy = [run for run in self.attempts.values() if run.phase not in ("finishing", "done")]
        return len(busy) + len(self.orphans)

    async def on_offer(self, offer: JobOffer) -> None:
        key = _key(offer)
        if key in self.attempts:
            return  # an offer sent again after a reconnect; the accept is in the outbox
        if self.slots_used() >= self.max_concurrent_jobs:
            self._reject(offer, AT_CAPACITY_REASON)
            return
        try:
            spec = spec_from_offer(offer)
        except JobSpecError as exc:
            logger.info("rejecting job %s: %s", offer["job_id"], exc)
            self._reject(offer, str(exc))
            return
        run = self._run_new(key, spec=spec, cap=cap_from_offer(offer))
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

    # --- helpers --------------------------------------------------------------------------

    def _run_new(self, key: Key, **extra: Any) -> AttemptRun:
        run = AttemptRun(
            ref=_ref(key),
            runtime=self.runtime,
            link=self.link,
            uploader=self.uploader,
            options=self.options,
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

    def _reject(self, offer: JobOffer, reason: str) -> None:
        self.link.send(
            "job.reject", {"job_id": offer["job_id"], "attempt": offer["attempt"], "reason": reason}
        )

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
