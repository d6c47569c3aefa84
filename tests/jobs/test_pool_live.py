"""Pools end to end (docs/pools.md, "The model"): a real daphne (``tests.live``), real agents
in subprocesses with the Docker runtime, a host joined to the pool with a pool token through
the API, jobs submitted through the API, and Celery beat's work in a thread (``Beat``).

A pool job waits while the pool's only host is busy although a public host is free, then
runs on the pool host; the public host is never offered a pool job, and the pool's hidden
host never a public one. Needs PostgreSQL, Redis and Docker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Membership, MembershipRole, Organisation, User
from config.transactions import durable_call
from hosts.models import Host
from jobs.audit_models import PoolAuditEvent
from jobs.models import AttemptStatus, Job, JobAttempt, JobStatus
from jobs.selectors import job_facts
from ledger.providers import providers
from ledger.services import wallet_credit
from tests.jobs.real_ledger import RealLedger
from tests.live import RATES, RUNNER_IMAGE, Beat, LiveServer, RealAgent, live_server_start, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

FUNDS = 100_000_000
CAP = 10_000_000
NAP = "import time\ntime.sleep(2)\nprint('done', flush=True)\n"


@pytest.fixture(autouse=True)
def _jobs_known_to_the_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "job_facts", job_facts)


@pytest.fixture
def server(tmp_path: Path, settings: Any) -> Iterator[LiveServer]:
    live = live_server_start(tmp_path, settings, JOB_LEASE_SECONDS=10)
    yield live
    live.kill()
    print(f"--- daphne ---\n{live.log_tail()}")


@pytest.fixture
def beat(server: LiveServer) -> Iterator[Beat]:
    with Beat() as ticking:
        yield ticking
    assert ticking.errors == []


@pytest.fixture
def make_agent(
    server: LiveServer, tmp_path: Path, hana: User, client_for: Callable[[User], Any]
) -> Iterator[Callable[..., RealAgent]]:
    agents: list[RealAgent] = []

    def make(name: str, slots: int, **rates: int) -> RealAgent:
        token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
        env = {"COMMUNIPUTE_SLOTS": str(slots), "COMMUNIPUTE_RUNNER_IMAGE": RUNNER_IMAGE}
        agent = RealAgent(tmp_path / name, server.url, token.json()["token"], "docker", env)
        Host.objects.filter(pk=agent.host_id).update(**{**RATES, **rates})
        agents.append(agent)
        agent.start()
        wait_for(lambda: Host.objects.get(pk=agent.host_id).slots == slots, "its slots")
        return agent

    yield make
    for agent in agents:
        agent.kill()
        agent.containers_remove()
        print(f"--- agent {agent.host_id} ---\n{agent.log_path.read_text()[-4000:]}")


def _submit(client: Any, **extra: Any) -> int:
    body = {
        "code": NAP,
        "placement": "auto",
        "cpus": 0.5,
        "memory_mb": 512,
        "timeout_seconds": 60,
        "max_cost_micros": CAP,
        **extra,
    }
    response = client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


def test_a_pool_job_waits_for_its_pools_busy_host_beside_a_free_public_one_then_runs_there(
    server, beat, make_agent, alice, hana, client_for
):
    # given: alice admins the lab; hana's dearer one-slot machine joins its (hidden) pool with
    # alice's pool token; hana's cheap two-slot machine stays public
    lab = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=lab, user=alice, role=MembershipRole.ADMIN)
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=FUNDS,
        key="pool-live",
        reason="t",
        source="purchase",
    )
    RealLedger().fund_organisation(lab, FUNDS)  # the lab pays for its pool jobs
    renter = client_for(alice)
    dear = RATES["cpu_core_hour_micros"] * 4
    pool_agent = make_agent("pool", slots=1, cpu_core_hour_micros=dear)
    public_agent = make_agent("public", slots=2)
    token = renter.post(f"/api/v1/organisations/{lab.pk}/host-tokens/").json()["token"]
    joined = client_for(hana).post(
        f"/api/v1/my/hosts/{pool_agent.host_id}/pool/", {"token": token}, format="json"
    )
    assert joined.status_code == 200, joined.json()

    # when: two pool jobs at once (the pool has one slot) and a public job of the member
    first = _submit(renter, pool=lab.pk)
    second = _submit(renter, pool=lab.pk)
    public = _submit(renter)

    # then: the second waits for the pool's host, saying so, though the public host is free
    wait_for(
        lambda: (
            Job.objects.filter(pk=second, status=JobStatus.QUEUED)
            .exclude(waiting_reason="")
            .exists()
            or JobAttempt.objects.filter(job_id=second).exists()
        ),
        "the second pool job waiting (or already offered once the first ended)",
    )
    waiting = renter.get(f"/api/v1/jobs/{second}/").json()
    if waiting["status"] == "queued":
        assert f"pool #{lab.pk}" in waiting["waiting_reason"], waiting

    # and: all three settle; the pool jobs ran on the pool host, one after the other, and the
    # public job on the public host
    wait_for(
        lambda: (
            Job.objects.filter(
                pk__in=[first, second, public], hold_released_at__isnull=False
            ).count()
            == 3
        ),
        "three jobs settled",
        120,
    )
    jobs = {job.pk: job for job in Job.objects.filter(pk__in=[first, second, public])}
    assert {pk: job.status for pk, job in jobs.items()} == {
        first: JobStatus.SUCCEEDED,
        second: JobStatus.SUCCEEDED,
        public: JobStatus.SUCCEEDED,
    }, {pk: job.status_reason for pk, job in jobs.items()}
    assert {pk: job.host_id for pk, job in jobs.items()} == {
        first: pool_agent.host_id,
        second: pool_agent.host_id,
        public: public_agent.host_id,
    }
    # never offered across the line, not even once
    assert set(
        JobAttempt.objects.filter(host_id=public_agent.host_id).values_list("job_id", flat=True)
    ) == {public}
    on_pool = JobAttempt.objects.filter(host_id=pool_agent.host_id)
    assert set(on_pool.values_list("job_id", flat=True)) == {first, second}
    assert set(on_pool.values_list("status", flat=True)) == {AttemptStatus.SUCCEEDED}
    # and the trail holds the join, both submits and both ends, not the public job
    kinds = list(PoolAuditEvent.objects.filter(organisation=lab).values_list("kind", "job_id"))
    assert sorted(kinds, key=str) == sorted(
        [
            ("host.joined", None),
            ("job.submitted", first),
            ("job.submitted", second),
            ("job.finished", first),
            ("job.finished", second),
        ],
        key=str,
    )
