"""Job groups end to end: a 20-task group created and read over HTTP through a real daphne
(``tests.live``), run by three real agents (Docker runtime, two slots each) in real containers,
with what Celery beat does in a thread (``Beat``).

Each task reads its index and the count from its environment and its argument from
``/inputs/task.json``, and writes an output. Mid-group one agent is killed (SIGKILL): the tasks
it ran are lost, run again on the other two, and are charged once (the lost attempts' charges
reversed); it gets no more of the group's tasks. One task raises: its result is the error (exit
code 1), not a failed group. The group's receipt is the sum of its tasks' receipts, and the
wallet went down by exactly that; the ledger reconciles. Needs PostgreSQL, Redis and Docker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from django.utils import timezone

from accounts.models import User
from accounts.services import api_token_create
from agent.runtime.quota import mounts_release
from config.transactions import durable_call
from hosts.models import Host, HostStatus
from jobs.models import (
    AttemptStatus,
    Job,
    JobAttempt,
    JobGroup,
    JobGroupHostExclusion,
    JobGroupStatus,
    JobStatus,
)
from jobs.selectors import job_facts
from ledger.providers import providers
from ledger.selectors import wallet_balances
from ledger.services import ledger_reconcile, wallet_credit
from tests.jobs.metering_steps import captured, charged
from tests.live import RATES, Beat, LiveServer, RealAgent, live_server_start, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

FUNDS = 100_000_000
TASKS = 20
RAISER = 7
# The task: who it is, from its environment and /inputs/task.json; an output; one raises.
TASK = """\
import json, os, time
index = int(os.environ["COMMUNIPUTE_TASK_INDEX"])
count = int(os.environ["COMMUNIPUTE_TASK_COUNT"])
with open("/inputs/task.json") as handle:
    argument = json.load(handle)
time.sleep(argument["sleep"])
if argument.get("raise"):
    raise ValueError(f"task {index} was told to raise")
with open(os.path.join(os.environ["COMMUNIPUTE_OUTPUTS"], "result.json"), "w") as handle:
    json.dump({"index": index, "count": count, "square": argument["x"] ** 2}, handle)
print("task", index, "of", count, "done", flush=True)
"""


@pytest.fixture(autouse=True)
def _jobs_known_to_the_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "job_facts", job_facts)


@pytest.fixture
def server(tmp_path: Path, settings: Any) -> Iterator[LiveServer]:
    # A dropped agent's attempts are lost 2 s after its socket closed (not the default 20 s).
    live = live_server_start(tmp_path, settings, HOST_DISCONNECT_GRACE_SECONDS=2)
    yield live
    live.kill()
    print(f"--- daphne ---\n{live.log_tail()}")


@pytest.fixture
def beat(server: LiveServer) -> Iterator[Beat]:
    with Beat() as ticking:
        yield ticking
    assert ticking.errors == []


@pytest.fixture
def agents(
    server: LiveServer, tmp_path: Path, hana: User, client_for: Callable[[User], Any]
) -> Iterator[list[RealAgent]]:
    started: list[RealAgent] = []
    for n in range(3):
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
        wait_for(partial(_has_slots, agent.host_id, 2), "its slots")
    yield started
    for agent in started:
        agent.kill()
        agent.containers_remove()
        # A killed agent leaves its attempts' disk-quota file systems mounted: release them.
        for attempt_dir in (agent.root / "work").glob("job-*"):
            mounts_release(attempt_dir)
        print(f"--- agent {agent.host_id} ---\n{agent.log_path.read_text()[-3000:]}")


@pytest.fixture
def api(server: LiveServer, alice: User) -> requests.Session:
    """alice's API over HTTP to daphne, with a personal token."""
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=FUNDS,
        key="groups-live-fund",
        reason="test",
        source="purchase",
    )
    _, token = api_token_create(user=alice, name="groups live")
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


def test_a_group_over_three_agents_survives_one_killed_and_is_charged_once(
    server, beat, agents, api, alice
):
    # given: twenty tasks, six at once, over three agents of two slots
    inputs = [{"argument": {"x": i, "sleep": 2, "raise": i == RAISER}} for i in range(TASKS)]
    body = {
        "code": TASK,
        "placement": "auto",
        "cpus": 0.5,
        "memory_mb": 512,
        "timeout_seconds": 60,
        "inputs": inputs,
        "max_parallel": 6,
        "task_max_cost_micros": 2_000_000,
        "max_cost_micros": TASKS * 2_000_000,
    }
    created = api.post(f"{server.url}/api/v1/job-groups/", json=body, timeout=30)
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]

    # when: with some tasks done, the agent that runs the most is killed mid-run
    wait_for(
        lambda: Job.objects.filter(group_id=group_id, status=JobStatus.SUCCEEDED).count() >= 3,
        "three tasks done",
        90,
    )
    victim = max(agents, key=lambda a: _running_on(a.host_id))
    # killed while a task has just started there (each sleeps 2 s): it is lost, not finished
    wait_for(lambda: _just_started_on(victim.host_id), "a task starting on the victim", 30)
    victim.kill()
    # An offer made before daphne has handled the dead socket's close may still go there (and
    # expires, the task offered again); from the moment the server knows, none may.
    wait_for(
        lambda: Host.objects.get(pk=victim.host_id).status == HostStatus.OFFLINE,
        "the server to see the victim gone",
        30,
    )
    gone_at = timezone.now()

    # then: the group ends with every task's result
    wait_for(
        lambda: JobGroup.objects.get(pk=group_id).status != JobGroupStatus.RUNNING,
        "the group finished",
        150,
    )
    group = api.get(f"{server.url}/api/v1/job-groups/{group_id}/?page_size=50", timeout=10).json()
    assert group["status"] == "finished", group
    assert group["counts"]["succeeded"] == TASKS - 1
    assert group["counts"]["failed"] == 1
    results = _all_results(api, server, group_id)
    assert [r["index"] for r in results] == list(range(TASKS))
    raised = results[RAISER]
    assert (raised["status"], raised["exit_code"]) == ("failed", 1), raised
    for result in results:
        if result["index"] != RAISER:
            assert result["status"] == "succeeded", result
            assert [o["name"] for o in result["outputs"]] == ["result.json"]
    output = api.get(
        f"{server.url}/api/v1/jobs/{results[4]['job_id']}/outputs/result.json", timeout=10
    )
    assert json.loads(output.content) == {"index": 4, "count": TASKS, "square": 16}

    # and: the victim's tasks were lost there and ran again elsewhere, charged once
    lost = list(
        JobAttempt.objects.filter(
            job__group_id=group_id, host_id=victim.host_id, status=AttemptStatus.LOST
        )
    )
    assert lost, "the killed agent was running a task"
    for attempt in lost:
        job = Job.objects.get(pk=attempt.job_id)
        last = JobAttempt.objects.filter(job=job).order_by("-number").first()
        assert last is not None
        assert last.host_id != victim.host_id
        assert last.status in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED)
        assert charged(job) == captured(job, last.number) == job.cost_micros
        assert job.cost_micros == last.charged_micros > 0
        assert attempt.reversed_micros == attempt.charged_micros
    assert JobGroupHostExclusion.objects.filter(group_id=group_id, host_id=victim.host_id).exists()
    assert not JobAttempt.objects.filter(
        job__group_id=group_id, host_id=victim.host_id, offered_at__gt=gone_at
    ).exists()

    # and: the receipt is the sum of the tasks' receipts, and the wallet paid exactly that
    receipt = api.get(f"{server.url}/api/v1/job-groups/{group_id}/receipt/", timeout=10).json()
    per_job = [
        api.get(f"{server.url}/api/v1/jobs/{line['job_id']}/receipt/", timeout=10).json()
        for line in receipt["tasks"]
    ]
    assert len(per_job) == TASKS
    for name in ("gross_micros", "fee_micros", "host_net_micros", "reversed_micros"):
        assert receipt["totals"][name] == sum(job["totals"][name] for job in per_job)
    paid = sum(job["totals"]["charged_micros"] for job in per_job)
    assert receipt["totals"]["charged_micros"] == paid > 0
    assert paid == sum(Job.objects.filter(group_id=group_id).values_list("cost_micros", flat=True))
    assert wallet_balances(alice) == {
        "available_micros": FUNDS - paid,
        "held_micros": 0,
        "balance_micros": FUNDS - paid,
    }
    assert ledger_reconcile(job_facts=job_facts).problems == []


def _has_slots(host_id: int, slots: int) -> bool:
    return Host.objects.get(pk=host_id).slots == slots


def _running_on(host_id: int) -> int:
    return JobAttempt.objects.filter(host_id=host_id, status=AttemptStatus.RUNNING).count()


def _just_started_on(host_id: int) -> bool:
    recently = timezone.now() - timedelta(seconds=0.8)
    running = JobAttempt.objects.filter(host_id=host_id, status=AttemptStatus.RUNNING)
    return running.filter(started_at__gte=recently).exists()


def _all_results(api: requests.Session, server: LiveServer, group_id: int) -> list[Any]:
    results: list[Any] = []
    index = 0
    while True:
        page = api.get(
            f"{server.url}/api/v1/job-groups/{group_id}/results/?index={index}&limit=7",
            timeout=10,
        ).json()
        results += page["results"]
        index = page["next_index"]
        if page["is_complete"]:
            return results
        assert page["results"], page  # the group finished: every result is there
