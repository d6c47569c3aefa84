"""Issue 11: an honest agent under faults is billed once, for what ran, and never flagged.

The real agent (``communipute-agent run``, in a subprocess) against a real daphne
(``tests.live``), jobs submitted through the API, the batch poster run by the test as Celery
beat would (every wait posts). Faults: the network between them dropped mid-job (a TCP proxy
cuts both ends; the server stays up), daphne killed and restarted mid-job, and (Docker) the
agent killed mid-job and started again after its container exited.

Each test asserts: the renter was charged exactly the cost of the final counters the agent
measured (one chain of captures, no reversal), the owner earns exactly that minus the fee,
the counters are within one report period of what the job itself measured, the host was
never flagged, and reconciliation is clean.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from config.transactions import durable_call
from hosts.models import Host, HostStatus
from jobs.models import Job, JobAttempt, UsageReport
from jobs.selectors import job_facts
from jobs.tasks import usage_charges_post
from ledger.models import AccountKind, LedgerTransaction, TransactionKind
from ledger.providers import providers
from ledger.services import ledger_reconcile, wallet_credit
from tests.jobs.metering_steps import captured, charged, fee_of, usage_keys
from tests.ledger.helpers import balance
from tests.live import (
    RATES,
    LiveServer,
    RealAgent,
    TcpProxy,
    cost,
    live_server_start,
    wait_for,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

FUNDS = 100_000_000
CAP = 10_000_000
REPORT_SECONDS = 1
STARTUP_MS = 1000
# 10 µcr per CPU-ms; 5 µcr per wall-ms for the 512 MB reserved (exact at these rates).
# Burns one core for BURN_SECONDS, says so every half second, and reports its own measure.
BURN_SECONDS = 6
BURN = f"""
import time
start, cpu0 = time.monotonic(), time.process_time()
next_tick, tick = start, 0
while time.monotonic() - start < {BURN_SECONDS}:
    if time.monotonic() >= next_tick:
        print(f"tick {{tick}}", flush=True)
        tick += 1
        next_tick += 0.5
print(f"measured wall_ms={{int((time.monotonic() - start) * 1000)}} "
      f"cpu_ms={{int((time.process_time() - cpu0) * 1000)}}", flush=True)
"""


@pytest.fixture(autouse=True)
def _jobs_known_to_the_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "job_facts", job_facts)


@pytest.fixture
def server(tmp_path: Path, settings: Any) -> Iterator[LiveServer]:
    # A lease long enough for the agent to come back through the faults.
    live = live_server_start(
        tmp_path,
        settings,
        HOST_USAGE_REPORT_SECONDS=REPORT_SECONDS,
        JOB_LEASE_SECONDS=30,
        JOB_STOP_GRACE_SECONDS=15,
    )
    yield live
    live.kill()
    print(f"--- daphne ---\n{live.log_tail()}")


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[TcpProxy]:
    forwarder = TcpProxy(server.port)
    yield forwarder
    forwarder.stop()


@pytest.fixture
def renter(alice: User, client_for: Callable[[User], Any]) -> Any:
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=FUNDS,
        key="faults-fund",
        reason="test",
        source="purchase",
    )
    return client_for(alice)


@pytest.fixture
def make_agent(
    proxy: TcpProxy, tmp_path: Path, hana: User, client_for: Callable[[User], Any]
) -> Iterator[Callable[[str], RealAgent]]:
    agents: list[RealAgent] = []

    def make(manager: str) -> RealAgent:
        token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
        agent = RealAgent(tmp_path / "agent", proxy.url, token.json()["token"], manager)
        Host.objects.filter(pk=agent.host_id).update(**RATES)
        agents.append(agent)
        agent.start()
        return agent

    yield make
    for agent in agents:
        agent.kill()
        if agent.env["COMMUNIPUTE_JOB_MANAGER"] == "docker":
            agent.containers_remove()
        print(f"--- agent {agent.host_id} ---\n{agent.log_path.read_text()[-6000:]}")


# --- steps -----------------------------------------------------------------------------------


def submit(client: Any) -> int:
    body = {
        "code": BURN,
        "placement": "auto",
        "cpus": 1,
        "memory_mb": 512,
        "timeout_seconds": 120,
        "max_cost_micros": CAP,
    }
    response = client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


def log_of(client: Any, job_id: int) -> str:
    return str(client.get(f"/api/v1/jobs/{job_id}/logs/", {"offset": 0}).json()["data"])


def posting(condition: Callable[[], Any]) -> Callable[[], Any]:
    """The condition, after a run of the batch poster (Celery beat posts every second)."""

    def check() -> Any:
        usage_charges_post()
        return condition()

    return check


def settled(job_id: int, timeout: float = 120) -> Job:
    job: Job = wait_for(
        posting(lambda: Job.objects.filter(pk=job_id, hold_released_at__isnull=False).first()),
        f"job {job_id} settled",
        timeout=timeout,
    )
    return job


def measured(log: str) -> tuple[int, int]:
    """(wall ms, cpu ms) the job measured of itself."""
    found = re.search(r"measured wall_ms=(\d+) cpu_ms=(\d+)", log)
    assert found, log
    return int(found[1]), int(found[2])


def assert_billed_once_for_what_ran(job: Job, log: str, alice: User, hana: User) -> None:
    [attempt] = JobAttempt.objects.filter(job=job)
    host = Host.objects.get(pk=attempt.host_id)
    assert (job.status, attempt.status, host.flagged_reports) == ("succeeded", "succeeded", 0), (
        job.status_reason,
        host.last_flag_reason,
    )
    assert attempt.usage["is_final"] is True
    cpu_ms, wall_ms = attempt.usage_cpu_ms, attempt.usage_wall_ms
    # within one report period of what the job measured itself; its wall time also has the
    # interpreter's start and the runtime's start and exit around it, which the job's own
    # clock doesn't see (up to ~0.8 s in a container on a loaded machine): STARTUP_MS
    job_wall, job_cpu = measured(log)
    period = REPORT_SECONDS * 1000
    assert job_wall <= wall_ms <= job_wall + STARTUP_MS + period, (wall_ms, job_wall)
    assert job_cpu - period <= cpu_ms <= job_cpu + period, (cpu_ms, job_cpu)
    # exactly once: one chain of captures adding up to the final counters' cost, no reversal
    bill = cost(min(cpu_ms, wall_ms), wall_ms)
    print(
        f"job {job.pk}: reported wall {wall_ms} ms, cpu {cpu_ms} ms; the job measured wall "
        f"{job_wall} ms, cpu {job_cpu} ms; billed {bill} µcr in {len(usage_keys(job))} captures"
    )
    assert charged(job) == captured(job) == bill == job.cost_micros
    keys = usage_keys(job)
    assert len(keys) == len(set(keys)) >= 1
    assert not LedgerTransaction.objects.filter(
        job_id=job.pk, kind=TransactionKind.REVERSAL
    ).exists()
    seqs = list(UsageReport.objects.filter(attempt=attempt).values_list("seq", flat=True))
    assert len(seqs) == len(set(seqs))
    assert balance(AccountKind.WALLET, user=alice) == FUNDS - bill
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == bill - fee_of(bill)
    assert balance(AccountKind.REVENUE) == fee_of(bill)
    assert balance(AccountKind.PLATFORM_LOSS) == 0
    report = ledger_reconcile(job_facts=job_facts)
    assert report.problems == []


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.docker
def test_network_drop_and_server_restart_mid_job_bill_once_for_what_ran(
    server, proxy, make_agent, renter, alice, hana
):
    # given: the real agent with the Docker runtime (a renter's job never goes to a host that
    # runs jobs without isolation), a job burning a core for 6 s
    agent = make_agent("docker")
    job_id = submit(renter)
    wait_for(posting(lambda: "tick 2\n" in log_of(renter, job_id)), "the job running", 60)
    first = Host.objects.get(pk=agent.host_id).connection_id

    # when: the network drops for a second and a half (the server stays up)
    proxy.cut(refuse=True)
    wait_for(
        lambda: Host.objects.get(pk=agent.host_id).status == HostStatus.OFFLINE,
        "the server to see the drop",
    )
    time.sleep(1.5)
    usage_charges_post()
    proxy.heal()
    reconnected = wait_for(
        posting(
            lambda: (
                Host.objects.filter(pk=agent.host_id, status=HostStatus.BUSY)
                .exclude(connection_id=first)
                .first()
            )
        ),
        "the agent back",
    )

    # and when: daphne is killed and restarted while the job still runs
    wait_for(posting(lambda: "tick 7\n" in log_of(renter, job_id)), "more output", 60)
    server.restart()
    wait_for(
        posting(
            lambda: (
                Host.objects.filter(pk=agent.host_id, status=HostStatus.BUSY)
                .exclude(connection_id=reconnected.connection_id)
                .exists()
            )
        ),
        "the agent back after the restart",
    )

    # then: the same attempt finishes; the log is whole; billed once for what ran
    job = settled(job_id)
    log = log_of(renter, job_id)
    ticks = [line for line in log.splitlines() if line.startswith("tick ")]
    assert ticks == [f"tick {i}" for i in range(len(ticks))]
    assert len(ticks) >= 2 * BURN_SECONDS - 1
    assert_billed_once_for_what_ran(job, log, alice, hana)


AWAY_AFTER_THE_EXIT_SECONDS = 3


@pytest.mark.docker
def test_agent_killed_mid_job_and_restarted_after_the_container_exited_bills_what_ran(
    server, proxy, make_agent, renter, alice, hana
):
    # given: the real agent with Docker, a job burning a core for 6 s
    agent = make_agent("docker")
    job_id = submit(renter)
    wait_for(posting(lambda: "tick 2\n" in log_of(renter, job_id)), "the job running", 120)

    # when: the agent is killed; the container runs to its end without it; the agent stays
    # away a while longer, then restarts
    assert agent.process is not None
    agent.process.send_signal(signal.SIGKILL)
    agent.process.wait(10)
    import docker

    from agent.runtime.docker_runtime import run_seconds_of

    client = docker.from_env()
    label = f"communipute.agent={agent.host_id}"
    [container] = wait_for(
        lambda: [
            c
            for c in client.containers.list(all=True, filters={"label": label})
            if c.status == "exited"
        ],
        "the container to exit",
        timeout=60,
    )
    ran = run_seconds_of(container.attrs["State"])
    assert ran is not None
    ran_ms = int(ran * 1000)
    time.sleep(AWAY_AFTER_THE_EXIT_SECONDS)
    agent.start()

    # then: the same attempt is reported finished with its final counters: the CPU time the
    # container's meter left (agent/runtime/meter.py), the wall time the engine says it ran
    # (not until the restart); never flagged, billed once, within a report period of the truth
    job = settled(job_id)
    wait_for(lambda: "measured" in log_of(renter, job_id), "the whole log")
    log = log_of(renter, job_id)
    assert_billed_once_for_what_ran(job, log, alice, hana)
    wall_ms = JobAttempt.objects.get(job=job).usage_wall_ms
    assert ran_ms - 1 <= wall_ms <= ran_ms + 1, (wall_ms, ran_ms)
