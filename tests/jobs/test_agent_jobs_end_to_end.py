"""Jobs end to end: a real daphne, the real ``communipute-agent run`` with the Docker job
manager, jobs submitted through the API. No Celery: the test calls the reaper itself.

Needs PostgreSQL (daphne shares the test database), Redis (the channel layer between this
process, where the API runs, and daphne, where the agents are) and Docker with the runner
image (`make runner-image`).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from config.transactions import durable_call
from hosts.models import Host
from jobs.models import Job, JobAttempt, UsageReport
from jobs.selectors import job_facts
from jobs.tasks import jobs_reap_pass
from ledger.models import AccountKind
from ledger.money import fee_for
from ledger.selectors import wallet_balances
from ledger.services import ledger_reconcile, wallet_credit
from tests.conftest import blob_dir_use
from tests.hosts.test_agent_end_to_end import Daphne, free_port, wait_for
from tests.ledger.helpers import balance
from tests.live import RealAgent

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
]

TIMINGS = {
    "HOST_HEARTBEAT_SECONDS": 1,
    "HOST_OFFLINE_AFTER_SECONDS": 30,
    "HOST_USAGE_REPORT_SECONDS": 1,
    "JOB_LEASE_SECONDS": 5,
    "JOB_OFFER_TTL_SECONDS": 10,
}
JOB_TIMEOUT = 60
FUNDS = 100_000_000


@pytest.fixture
def server(tmp_path: Path, settings: Any) -> Iterator[Daphne]:
    for name, value in TIMINGS.items():
        setattr(settings, name, value)
    settings.MEDIA_ROOT = tmp_path / "media"
    blob_dir_use(settings, tmp_path / "blobs")
    # Liveness is the socket (jobs/heartbeat_batch.py): daphne's websocket pings, scaled to
    # these timings as production's (20 s, 20 s) are to its, drop an agent that stops answering.
    pings = ("--ping-interval", "1", "--ping-timeout", "2")
    daphne = Daphne(free_port(), tmp_path / "daphne.log", pings)
    daphne.env.update({name: str(value) for name, value in TIMINGS.items()})
    daphne.env["MEDIA_ROOT"] = str(tmp_path / "media")
    daphne.env["BLOB_DIR"] = str(tmp_path / "blobs")
    daphne.start()
    yield daphne
    daphne.kill()


@pytest.fixture
def make_agent(
    server: Daphne, tmp_path: Path, hana: User, client_for: Callable[[User], Any]
) -> Iterator[Callable[..., RealAgent]]:
    agents: list[RealAgent] = []

    def make(name: str = "a", **rates: int) -> RealAgent:
        token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
        agent = RealAgent(tmp_path / name, f"http://127.0.0.1:{server.port}", token.json()["token"])
        Host.objects.filter(pk=agent.host_id).update(
            cpu_core_hour_micros=rates.get("cpu", 100_000),
            memory_gb_hour_micros=rates.get("memory", 10_000),
        )
        agents.append(agent)
        agent.start()
        return agent

    yield make
    for agent in agents:
        agent.kill()
        agent.containers_remove()
        print(f"--- agent {agent.host_id} ---\n{agent.log_path.read_text()[-4000:]}")
    print(f"--- daphne ---\n{(tmp_path / 'daphne.log').read_text()[-3000:]}")


@pytest.fixture
def renter(alice: User, client_for: Callable[[User], Any]) -> Any:
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=FUNDS,
        key="e2e-fund",
        reason="test",
        source="purchase",
    )
    return client_for(alice)


def submit(client: Any, code: str, **extra: Any) -> int:
    body = {
        "code": code,
        "placement": "auto",
        "cpus": 1,
        "memory_mb": 256,
        "timeout_seconds": JOB_TIMEOUT,
        "max_cost_micros": 1_000_000,
        **extra,
    }
    response = client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


def job_of(client: Any, job_id: int) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/jobs/{job_id}/").json())


def finished(client: Any, job_id: int, timeout: float = 90) -> dict[str, Any]:
    final = {"succeeded", "failed", "cancelled", "timed_out", "budget_exhausted"}
    return dict(
        wait_for(
            lambda: (job := job_of(client, job_id))["status"] in final and job,
            f"job {job_id} to finish",
            timeout=timeout,
        )
    )


def log_text(client: Any, job_id: int, **query: Any) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/jobs/{job_id}/logs/", {"offset": 0, **query}).json())


def complete_log(client: Any, job_id: int) -> str:
    page = wait_for(
        lambda: (page := log_text(client, job_id))["is_complete"] and page, "the whole log"
    )
    return str(page["data"])


def test_hello_world_runs_to_success_with_its_log_and_outputs(make_agent, renter, alice):
    # given
    agent = make_agent()

    # when
    job_id = submit(
        renter,
        "print('hello from the sandbox')\nopen('/outputs/answer.txt', 'w').write('42')\n",
    )

    # then
    job = finished(renter, job_id)
    assert (job["status"], job["status_reason"], job["exit_code"]) == (
        "succeeded",
        "exit code 0",
        0,
    )
    assert (job["host"], job["attempt"]) == (agent.host_id, 1)
    assert complete_log(renter, job_id) == "hello from the sandbox\n"
    outputs = renter.get(f"/api/v1/jobs/{job_id}/outputs/").json()
    assert [(o["name"], o["size"]) for o in outputs["results"]] == [("answer.txt", 2)]
    download = renter.get(f"/api/v1/jobs/{job_id}/outputs/answer.txt")
    assert b"".join(download.streaming_content) == b"42"
    attempt = JobAttempt.objects.get(job_id=job_id)
    assert attempt.usage["is_final"] is True
    assert attempt.usage["wall_seconds"] > 0
    wait_for(lambda: not agent.containers(), "the container removed")
    # settled: the wallet paid what the receipt says, the rest of the hold came back
    wait_for(lambda: wallet_balances(alice)["held_micros"] == 0, "the hold released")
    receipt = renter.get(f"/api/v1/jobs/{job_id}/receipt/").json()
    charged = receipt["totals"]["charged_micros"]
    assert wallet_balances(alice)["balance_micros"] == FUNDS - charged


def test_a_requirement_is_installed_and_imported(make_agent, renter):
    make_agent()

    job_id = submit(renter, "import six\nprint(six.__version__)\n", requirements=["six==1.17.0"])

    job = finished(renter, job_id, timeout=240)
    assert job["status"] == "succeeded", job["status_reason"]
    assert complete_log(renter, job_id) == "1.17.0\n"


def test_cancel_mid_run_stops_the_container(make_agent, renter):
    # given a job that runs until stopped
    agent = make_agent()
    job_id = submit(renter, "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    wait_for(lambda: log_text(renter, job_id)["data"] == "up\n", "the job running")

    # when
    response = renter.post(f"/api/v1/jobs/{job_id}/cancel/")

    # then
    assert response.status_code == 200
    job = finished(renter, job_id, timeout=30)
    assert job["status"] == "cancelled"
    wait_for(lambda: not agent.containers(), "the container removed")


def test_an_agent_killed_mid_job_resumes_it_after_a_restart(make_agent, renter):
    # given a job printing a line every 0.3 s
    agent = make_agent()
    source = (
        "import time\n"
        "for i in range(20):\n"
        "    print(f'line {i}', flush=True)\n"
        "    time.sleep(0.3)\n"
    )
    job_id = submit(renter, source)
    wait_for(lambda: "line 2\n" in log_text(renter, job_id)["data"], "some output")

    # when the agent dies and comes back within the lease
    agent.signal(signal.SIGKILL)
    agent.start()

    # then the same attempt finishes there: resumed, not run twice
    job = finished(renter, job_id)
    assert (job["status"], job["attempt"]) == ("succeeded", 1)
    assert JobAttempt.objects.filter(job_id=job_id).count() == 1
    assert complete_log(renter, job_id) == "".join(f"line {i}\n" for i in range(20))


def test_an_agent_stopped_past_its_lease_loses_the_attempt_to_another_host(make_agent, renter):
    # given two hosts; the job goes to the cheaper one
    cheap = make_agent("cheap", cpu=50_000)
    other = make_agent("other", cpu=90_000)
    source = "import time\nprint('start', flush=True)\ntime.sleep(4)\nprint('done')\n"
    job_id = submit(renter, source)
    wait_for(lambda: log_text(renter, job_id)["data"] == "start\n", "the first attempt running")
    assert job_of(renter, job_id)["host"] == cheap.host_id

    # when its agent stops answering past the lease and the reaper runs
    cheap.signal(signal.SIGSTOP)
    wait_for(
        lambda: jobs_reap_pass().attempts_lost == 1,
        "the lease to expire",
        timeout=TIMINGS["JOB_LEASE_SECONDS"] * 3,
    )

    # then the job runs again on the other host and succeeds there
    job = finished(renter, job_id)
    assert (job["status"], job["attempt"], job["host"]) == ("succeeded", 2, other.host_id)
    statuses = dict(JobAttempt.objects.filter(job_id=job_id).values_list("number", "status"))
    assert statuses == {1: "lost", 2: "succeeded"}
    assert complete_log(renter, job_id) == "start\ndone\n"

    # when the stopped agent wakes up, the server tells it the attempt is stale: it kills it
    cheap.signal(signal.SIGCONT)
    wait_for(lambda: not cheap.containers(), "the lost attempt's container removed")
    assert Job.objects.get(pk=job_id).status == "succeeded"


BURN = "import time\nend = time.time() + 3\nwhile time.time() < end:\n    pass\nprint('burnt')\n"


def test_a_metered_job_costs_exactly_what_its_receipt_says(
    make_agent: Any, renter: Any, alice: User, hana: User
) -> None:
    """Metering end to end: the receipt, the wallet and the host's earnings agree to the
    micro-credit. No Celery: the charges are posted when the job settles, as the batch poster
    would have done them every second."""
    # given: a host at 1 µcr per CPU-millisecond and 0.1 µcr per GB-millisecond
    agent = make_agent(cpu=3_600_000, memory=360_000)

    # when: a job keeps one core busy for about three seconds
    job_id = submit(renter, BURN)
    job = finished(renter, job_id)
    wait_for(lambda: wallet_balances(alice)["held_micros"] == 0, "the job settled")
    receipt = renter.get(f"/api/v1/jobs/{job_id}/receipt/").json()

    # then: it was charged for what the agent measured, and every figure agrees
    assert job["status"] == "succeeded", job["status_reason"]
    [attempt] = receipt["attempts"]
    totals = receipt["totals"]
    assert (attempt["attempt"], attempt["host_id"], receipt["is_settled"]) == (
        1,
        agent.host_id,
        True,
    )
    cpu = Decimal(attempt["usage"][0]["quantity"])
    # about three seconds of wall time; of CPU, what the (shared) machine gave the container
    wall = Decimal(attempt["wall_seconds"])
    assert Decimal("2.9") < wall < 10, attempt
    assert Decimal("0.3") < cpu <= wall, attempt
    row = JobAttempt.objects.get(job_id=job_id)
    assert (row.usage["is_final"], row.charged_micros) == (True, totals["charged_micros"])
    assert UsageReport.objects.filter(attempt=row).count() >= 2  # reports while it ran + final
    charged = totals["charged_micros"]
    assert charged == attempt["usage_cost_micros"] > 300
    assert FUNDS - wallet_balances(alice)["balance_micros"] == charged
    assert receipt["hold_micros"] - receipt["refund_micros"] == charged
    assert totals["fee_micros"] == fee_for(charged)
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == charged - fee_for(charged)
    assert totals["host_net_micros"] == charged - fee_for(charged)
    assert ledger_reconcile(job_facts=job_facts).problems == []
