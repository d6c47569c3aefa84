"""``communipute.Executor``: a ``concurrent.futures.Executor`` whose calls run on the
marketplace's hosts, so code written for ``ProcessPoolExecutor`` (and Dask, through
``dask.compute(..., scheduler=executor)``) runs across hosts unchanged (docs/sdk.md).

``submit(fn, *args, **kwargs)`` makes a job group of one task (the function and its arguments
cloudpickled, as ``Client.map`` ships them); ``map(fn, *iterables)`` makes one group of a task
per call. One thread polls the groups still going (``GET …/results/``, and while a call
waits for a host ``GET …/?status=running``) with pauses from 0.2 s growing to 2 s while
nothing changes, and completes each future as its task's result arrives: the return value,
or the function's own exception (its remote traceback as the ``__cause__``, as
``ProcessPoolExecutor`` gives it), or a ``TaskError`` for a task that died without one.

A future is *pending* while its task waits for a host and *running* once its job runs on one,
so ``future.cancel()`` (and ``shutdown(cancel_futures=True)``) stops a call that has not
started — its group cancelled, or its job for a call of ``map`` — and not one that runs.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from communipute.errors import ApiError, CommuniputeError, NotFound, TaskError
from communipute.functions import Call
from communipute.groups import POLL_FIRST, POLL_MAX, Group

if TYPE_CHECKING:
    from communipute.client import Client
    from communipute.maps import MapRun

logger = logging.getLogger("communipute")

POLL_FAILURES_MAX = 3  # rounds in a row a group could not be read before its futures fail


class TaskFuture(concurrent.futures.Future[Any]):
    """A call's future: ``group_id`` and ``index`` say which task it is, ``job_id`` its job
    once it has one."""

    def __init__(self, executor: Executor, group: Group, index: int) -> None:
        super().__init__()
        self._executor = executor
        self.group_id = group.id
        self.index = index
        self.job_id: int | None = None

    def __repr__(self) -> str:
        return f"<TaskFuture group {self.group_id} task {self.index} {super().__repr__()}>"

    def cancel(self) -> bool:
        """Cancel a call whose task has not started on a host (its job stopped on the
        marketplace as well); one that runs or ended: ``False``, as for any executor."""
        if not super().cancel():
            return False
        self._executor._cancelled(self)
        return True


@dataclass
class _Tracked:
    run: MapRun
    futures: list[TaskFuture]
    next_index: int = 0
    failures: int = 0
    cancelled: bool = False
    started: set[int] = field(default_factory=set)

    @property
    def done(self) -> bool:
        return all(future.done() for future in self.futures)


class Executor(concurrent.futures.Executor):
    """``Executor(client, **job_options)``: each call a task on the marketplace.

    ``job_options`` are ``Client.map``'s for a function (``requirements``, ``cpus``,
    ``memory_mb``, ``gpus``, ``timeout_seconds``, ``host``, ``results`` …); ``max_cost`` /
    ``max_cost_micros`` is what **one call** may cost (required), a ``map``'s group cap that
    times its calls. ``max_workers`` is what Dask reads to decide how many tasks to keep
    submitted (default 10); ``submit`` itself never waits: the marketplace queues.
    """

    def __init__(self, client: Client, *, max_workers: int = 10, **job_options: Any) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        for name in ("max_cost", "max_cost_micros"):
            if name in job_options:
                job_options[f"per_task_{name}"] = job_options.pop(name)
        if (
            job_options.get("per_task_max_cost") is None
            and job_options.get("per_task_max_cost_micros") is None
        ):
            raise ValueError("give each call's cost cap: max_cost (credits) or max_cost_micros")
        self._client = client
        self._options = job_options
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._tracked: dict[int, _Tracked] = {}
        self._shutdown = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<communipute.Executor {self._client.url} {len(self._tracked)} groups going>"

    # --- the Executor API ---------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Run ``fn(*args, **kwargs)`` as a task (a group of one); its future at once."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        run = self._client._function_run(fn, [(args, kwargs)], **self._options)
        [future] = self._track(run, 1)
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[Any]:
        """``fn`` over the iterables' items (zipped) as **one** job group, a task per call;
        the results in order, a call's exception raised where its result would be (as
        ``concurrent.futures``). ``chunksize`` and ``buffersize`` are accepted and unused: a
        group is already the batch. Leaving the iterator early cancels what has not run."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        calls: list[Call] = [(tuple(args), {}) for args in zip(*iterables, strict=False)]
        if not calls:
            return iter(())
        run = self._client._function_run(fn, calls, **self._options)
        futures = self._track(run, len(calls))
        deadline = None if timeout is None else time.monotonic() + timeout

        def results() -> Iterator[Any]:
            try:
                for future in futures:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    yield future.result(left)
            finally:
                for future in futures:
                    future.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more calls; ``cancel_futures``: cancel every call not started on a host;
        ``wait``: until every call has ended (their groups too)."""
        with self._lock:
            self._shutdown = True
            tracked = list(self._tracked.values())
        if cancel_futures:
            for group in tracked:
                for future in group.futures:
                    future.cancel()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if wait and thread is not None:
            thread.join()

    # --- the poller ---------------------------------------------------------------------------

    def _track(self, run: MapRun, count: int) -> list[TaskFuture]:
        futures = [TaskFuture(self, run.group, index) for index in range(count)]
        for future, task in zip(futures, run.group.info.tasks, strict=False):
            future.job_id = task.job_id
        with self._lock:
            self._tracked[run.group.id] = _Tracked(run, futures)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._poll_loop, name="communipute-executor", daemon=True
                )
                self._thread.start()
        self._wake.set()
        return futures

    def _poll_loop(self) -> None:
        pause = POLL_FIRST
        while True:
            with self._lock:
                tracked = list(self._tracked.values())
                if not tracked:  # the next call starts another poller
                    self._thread = None
                    return
            changed = False
            for group in tracked:
                try:
                    changed |= self._poll(group)
                    group.failures = 0
                except Exception as exc:  # keep polling the others; fail this one at last
                    group.failures += 1
                    if isinstance(exc, NotFound) or group.failures >= POLL_FAILURES_MAX:
                        self._fail(group, exc)
                        changed = True
                if group.done:
                    with self._lock:
                        self._tracked.pop(group.run.group.id, None)
            pause = POLL_FIRST if changed else min(pause * 1.5, POLL_MAX)
            self._wake.wait(pause)
            self._wake.clear()

    def _poll(self, tracked: _Tracked) -> bool:
        """One read of a group: the results now ready (in order), then, while some of its
        calls wait for a host, which have started. Whether anything changed."""
        group = tracked.run.group
        results, tracked.next_index, _ = group.results_page(tracked.next_index)
        for result in results:
            future = tracked.futures[result.index]
            future.job_id = result.job_id
            if future.done():
                continue
            try:
                value = tracked.run._decode(result)
            except Exception as exc:  # the result could not be read or loaded
                value = exc
            if not future.running() and not future.set_running_or_notify_cancel():
                continue  # cancelled meanwhile
            if isinstance(value, TaskError) and value.exception is not None:
                future.set_exception(value.exception)  # the function's own, as a pool's
            elif isinstance(value, Exception):
                future.set_exception(value)
            else:
                future.set_result(value)
        changed = bool(results)
        waiting = [f for f in tracked.futures[tracked.next_index :] if not f.running()]
        if any(not f.done() for f in waiting):
            for task in group.tasks(status="running"):
                future = tracked.futures[task.index]
                future.job_id = task.job_id
                if task.job_status == "running" and not future.done() and not future.running():
                    changed |= future.set_running_or_notify_cancel()
        return changed

    def _fail(self, tracked: _Tracked, exc: Exception) -> None:
        for future in tracked.futures:
            if not future.done() and (future.running() or future.set_running_or_notify_cancel()):
                future.set_exception(exc)

    def _cancelled(self, future: TaskFuture) -> None:
        """A future was cancelled: stop its task on the marketplace — the whole group once
        none of its calls is wanted, else the call's job where it has one."""
        with self._lock:
            tracked = self._tracked.get(future.group_id)
        if tracked is None:
            return
        try:
            if all(f.cancelled() or f.done() for f in tracked.futures):
                if not tracked.cancelled:
                    tracked.cancelled = True
                    tracked.run.cancel_quietly()
            elif future.job_id is not None:
                self._client.job(future.job_id).cancel()
        except ApiError as exc:
            if exc.code not in ("job_finished", "group_finished"):
                logger.warning(
                    "cancelling task %s of group %s: %s", future.index, future.group_id, exc
                )
        except CommuniputeError as exc:
            logger.warning("cancelling task %s of group %s: %s", future.index, future.group_id, exc)
        self._wake.set()
