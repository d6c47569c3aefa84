"""``map``, functions, the ``Executor`` under Dask and the ``map`` command against the real
thing: a real daphne (``tests.live``), two real agents of two slots each running the tasks in
Docker containers (cloudpickle, and dask for the graph, installed in them by pip), what beat
runs in a thread (``Beat``).

- ``Client.map`` of a function over six inputs, one raising: the values in input order, the
  raiser a ``TaskError`` carrying its ``ValueError`` (``return_exceptions=True``), the tasks
  spread over both hosts, the group's receipt what left the wallet; then ``Executor`` under
  ``dask.compute`` on a small graph whose nodes depend on each other, a task each;
- ``Client.map`` of a script (``result.json`` parsed, or its log), and the ``communipute map``
  command as a subprocess: ``--json`` lines in order, exit 1 for a failed task.

Needs PostgreSQL, Redis and Docker (and pip's index reachable from the install containers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from dask.base import compute
from dask.delayed import delayed

from accounts.models import User
from accounts.services import api_token_create
from agent.runtime.quota import mounts_release
from communipute import Client, Executor, TaskError, TaskOutput, pinned
from config.transactions import durable_call
from hosts.models import Host
from jobs.models import Job
from ledger.services import wallet_credit
from tests.live import RATES, Beat, LiveServer, RealAgent, live_server_start, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]

ROOT = Path(__file__).resolve().parents[2]
FUNDS = 100_000_000  # 100 credits
RAISER = 4
TASK: dict[str, Any] = {
    "cpus": 0.5,
    "memory_mb": 256,
    "timeout_seconds": 120,
    "per_task_max_cost": 1,
}


@pytest.fixture
def server(tmp_path: Path, settings: Any) -> Iterator[LiveServer]:
    # The tasks install cloudpickle (and dask) with pip before they run: more than the live
    # settings' 2 s to be running after an accept.
    live = live_server_start(tmp_path, settings, JOB_LEASE_SECONDS=10, JOB_PREPARE_MAX_SECONDS=180)
    yield live
    live.kill()
    print(f"--- daphne ---\n{live.log_tail()}")


@pytest.fixture
def agents(
    server: LiveServer, tmp_path: Path, hana: User, client_for: Callable[[User], Any]
) -> Iterator[list[RealAgent]]:
    started: list[RealAgent] = []
    for n in range(2):
        token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
        agent = RealAgent(
            tmp_path / f"agent-{n}",
            server.url,
            token.json()["token"],
            "docker",
            {"COMMUNIPUTE_SLOTS": "2"},
        )
        Host.objects.filter(pk=agent.host_id).update(**RATES)
        started.append(agent)
        agent.start()
        wait_for(partial(_slots_are, agent.host_id, 2), "its slots")
    yield started
    for agent in started:
        agent.kill()
        agent.containers_remove()
        for attempt_dir in (agent.root / "work").glob("job-*"):
            mounts_release(attempt_dir)
        print(f"--- agent {agent.host_id} ---\n{agent.log_path.read_text()[-3000:]}")


def _slots_are(host_id: int, slots: int) -> bool:
    return bool(Host.objects.get(pk=host_id).slots == slots)


@pytest.fixture
def beat(server: LiveServer) -> Iterator[Beat]:
    with Beat() as ticking:
        yield ticking
    assert ticking.errors == []


@pytest.fixture
def token(alice: User) -> str:
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=FUNDS,
        key="sdk-map-live-fund",
        reason="test",
        source="purchase",
    )
    _, made = api_token_create(user=alice, name="sdk map live")
    return made


def square_unless_four(x: int) -> dict[str, Any]:
    import os
    import time

    time.sleep(1)  # long enough for the tasks to overlap on both hosts
    if x == RAISER:
        raise ValueError(f"{x} is not welcome here")
    return {"x": x, "square": x * x, "task": int(os.environ["COMMUNIPUTE_TASK_INDEX"])}


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


@pytest.mark.usefixtures("beat")
def test_a_function_maps_over_two_hosts_and_dask_computes_a_graph_on_the_executor(
    server: LiveServer, agents: list[RealAgent], token: str
) -> None:
    client = Client(server.url, token, progress=False)

    # when: a function over six inputs, four at once, one of them raising
    results = client.map(
        square_unless_four,
        range(6),
        max_parallel=4,
        return_exceptions=True,
        results="pickle",
        **TASK,
    )

    # then: the values in input order, the failure in its place with its own exception
    for x in (0, 1, 2, 3, 5):
        assert results[x] == {"x": x, "square": x * x, "task": x}, results[x]
    error = results[RAISER]
    assert isinstance(error, TaskError), error
    assert (error.index, error.status, error.exit_code, error.stage) == (
        RAISER,
        "failed",
        1,
        "call",
    )
    assert isinstance(error.exception, ValueError)
    assert str(error.exception) == "4 is not welcome here"
    assert "in square_unless_four" in error.traceback

    # the tasks ran on both hosts, and the group's receipt is what left the wallet
    [group] = client.groups()
    jobs = Job.objects.filter(group_id=group.id)
    assert {job.host_id for job in jobs} == {agent.host_id for agent in agents}
    receipt = group.receipt()
    assert receipt.is_settled
    assert len(receipt.tasks) == 6
    assert 0 < receipt.charged_micros == sum(job.cost_micros for job in jobs)
    assert client.wallet().available_micros == FUNDS - receipt.charged_micros

    # when: a small Dask graph (two leaves, their sum, the sum plus ten) on the executor
    total = delayed(add)(delayed(add)(delayed(inc)(1), delayed(inc)(2)), 10)
    # Dask hands its own tuples back and forth: they travel as pickles (hosts one trusts)
    with Executor(
        client, requirements=pinned("dask"), max_workers=2, results="pickle", **TASK
    ) as executor:
        (value,) = compute(total, scheduler=executor)

    # then: its value, each node a task of its own (a group of one each)
    assert value == 15
    assert len(client.groups()) == 1 + 4


SCRIPT = """\
import json, os, sys
n = json.load(open("/inputs/task.json"))["n"]
print("task", os.environ["COMMUNIPUTE_TASK_INDEX"], "of", os.environ["COMMUNIPUTE_TASK_COUNT"])
if n < 0:
    sys.exit(f"no negatives: {n}")
if n % 2 == 0:
    json.dump({"half": n // 2}, open("/outputs/result.json", "w"))
"""


@pytest.mark.usefixtures("agents", "beat")
def test_a_script_maps_from_python_and_from_the_command_line(
    server: LiveServer, token: str, tmp_path: Path
) -> None:
    script = tmp_path / "halve.py"
    script.write_text(SCRIPT)
    client = Client(server.url, token, progress=False)

    # when: a script over three inputs, from Python
    results = client.map(script, [{"n": 4}, {"n": 3}, {"n": 10}], **TASK)

    # then: result.json parsed where it wrote one, else its exit code and log
    assert results[0] == {"half": 2}
    assert isinstance(results[1], TaskOutput)
    assert (results[1].exit_code, results[1].log) == (0, "task 1 of 3\n")
    assert results[2] == {"half": 5}

    # when: the command over a JSON Lines file, one input failing
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"n": 8}\n{"n": -1}\n{"n": 5}\n')
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMMUNIPUTE_")},
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT / "client"),
        "COMMUNIPUTE_URL": server.url,
        "COMMUNIPUTE_TOKEN": token,
        "COMMUNIPUTE_CONFIG": str(tmp_path / "none.json"),
    }
    command = [sys.executable, "-m", "communipute", "map", str(script), "--inputs", str(inputs)]
    flags = ["--max-cost", "3", "--max-parallel", "3", "--cpus", "0.5", "--timeout", "120"]
    ran = subprocess.run(
        [*command, *flags, "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )

    # then: exit 1 (a task failed), a JSON line per task in input order
    assert ran.returncode == 1, ran.stderr
    rows = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [(row["index"], row["status"]) for row in rows] == [
        (0, "succeeded"),
        (1, "failed"),
        (2, "succeeded"),
    ]
    assert rows[0]["result"] == {"half": 4}
    assert (rows[1]["exit_code"], rows[1]["result"]) == (1, None)
    assert "no negatives: -1" in rows[1]["log"]
    assert (rows[2]["result"], rows[2]["log"]) == (None, "task 2 of 3\n")
    assert "finished: 1 failed, 2 succeeded" in ran.stderr
