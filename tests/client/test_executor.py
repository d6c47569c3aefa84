"""``communipute.Executor`` is a ``concurrent.futures.Executor`` (and a Dask scheduler) whose
calls are tasks on the marketplace: here against the fake server, whose tasks the real runner
runs in fresh processes (``fake_groups``)."""

from __future__ import annotations

import concurrent.futures
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from dask.base import compute
from dask.delayed import delayed

from communipute import Executor, RemoteTraceback, TaskError, TaskFuture
from communipute import functions as shipping
from tests.client.fake_groups import FakeGroups
from tests.client.fakes import FakeServer


@pytest.fixture(autouse=True)
def _runner_is_this_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(shipping.RUNNER_PYTHON_ENV, "{}.{}".format(*sys.version_info[:2]))


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def groups(server: FakeServer, tmp_path: Path) -> FakeGroups:
    return FakeGroups(server, tmp_path / "hosts")


def until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def halve(x: int) -> float:
    if x < 0:
        raise ArithmeticError(f"no halves of {x} here")
    return x / 2


def test_submit_runs_each_call_as_a_task_and_its_future_gets_the_value_or_the_exception(
    server, groups
) -> None:
    with Executor(server.client(), max_cost="0.5", cpus=0.5, results="pickle") as executor:
        # when
        ok = executor.submit(halve, 5)
        bad = executor.submit(halve, x=-1)

        # then: futures of concurrent.futures, with the value, or the function's own
        # exception with the remote traceback as its cause (as ProcessPoolExecutor's)
        assert isinstance(ok, concurrent.futures.Future)
        assert isinstance(ok, TaskFuture)
        assert ok.result(timeout=10) == 2.5
        error = bad.exception(timeout=10)
        assert isinstance(error, ArithmeticError)
        assert str(error) == "no halves of -1 here"
        assert isinstance(error.__cause__, RemoteTraceback)
        assert "in halve" in str(error.__cause__)

    # each call a group of one task, its cap the call's
    first, _second = server.sent("POST", "/api/v1/job-groups/")
    assert (len(first["inputs"]), first["cpus"]) == (1, 0.5)
    assert (first["max_cost_micros"], first["task_max_cost_micros"]) == (500_000, 500_000)
    assert ok.group_id != bad.group_id
    assert (ok.index, ok.job_id) == (0, groups.groups[ok.group_id].tasks[0].job_id)


def test_map_is_one_group_in_order_raising_where_a_call_failed(server, groups) -> None:
    with Executor(server.client(), max_cost_micros=300_000, results="pickle") as executor:
        results = executor.map(halve, [2, 4, -6, 8])

        assert next(results) == 1.0
        assert next(results) == 2.0
        with pytest.raises(ArithmeticError, match="no halves of -6"):
            next(results)

    [body] = server.sent("POST", "/api/v1/job-groups/")
    assert len(body["inputs"]) == 4
    assert (body["max_cost_micros"], body["task_max_cost_micros"]) == (1_200_000, 300_000)


def test_a_call_waiting_for_a_host_can_be_cancelled_and_one_running_cannot(server, groups) -> None:
    # given: tasks that wait for their hosts
    groups.auto = False
    executor = Executor(server.client(), max_cost=1)
    waiting = executor.submit(halve, 1)
    started = executor.submit(halve, 2)
    groups.start(started.group_id, 0)
    until(started.running, "the started call to be running")

    # when / then: the waiting one is cancelled, its group with it; the running one goes on
    assert not waiting.running()
    assert waiting.cancel() is True
    assert waiting.cancelled()
    assert server.calls("POST", f"/api/v1/job-groups/{waiting.group_id}/cancel/")
    assert started.cancel() is False
    groups.finish(started.group_id, 0)
    assert started.result(timeout=10) == 1.0
    executor.shutdown(wait=True)
    assert groups.groups[waiting.group_id].status == "cancelled"


def test_shutdown_cancel_futures_cancels_the_calls_not_started_and_refuses_new_ones(
    server, groups
) -> None:
    groups.auto = False
    executor = Executor(server.client(), max_cost=1)
    futures = [executor.submit(halve, n) for n in range(3)]

    executor.shutdown(wait=True, cancel_futures=True)

    assert all(future.cancelled() for future in futures)
    assert {group.status for group in groups.groups.values()} == {"cancelled"}
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(halve, 1)


def test_a_task_that_ended_without_an_exception_of_its_own_is_a_task_error(server, groups) -> None:
    groups.auto = False
    executor = Executor(server.client(), max_cost=1)
    future = executor.submit(halve, 1)
    groups.start(future.group_id, 0)
    until(future.running, "the call to be running")
    server.client().group(future.group_id).cancel()  # as from elsewhere: the web app

    error = future.exception(timeout=10)

    assert isinstance(error, TaskError)
    assert error.status == "cancelled"
    executor.shutdown()


def test_an_executor_needs_each_calls_cap() -> None:
    with pytest.raises(ValueError, match="each call's cost cap"):
        Executor(FakeServer().client())


# --- Dask -------------------------------------------------------------------------------------


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def test_dask_computes_a_graph_on_the_executor_a_task_per_node(server, groups) -> None:
    # given: a small graph whose nodes depend on each other
    total = delayed(add)(delayed(add)(delayed(inc)(1), delayed(inc)(2)), 10)

    # when
    with Executor(server.client(), max_cost=1, max_workers=4) as executor:
        (value,) = compute(total, scheduler=executor)

    # then: the value, each node a task of its own (the host needs dask: pinned)
    assert value == 15
    assert len(server.sent("POST", "/api/v1/job-groups/")) == 4
