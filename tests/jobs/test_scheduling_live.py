"""Issue 12's scheduling, end to end: a real daphne (``tests.live``), the real agent in
subprocesses with the Docker runtime, real containers, jobs submitted through the API, and
what Celery beat runs (the reaper, the poster, the offline marker) in a thread (``Beat``).

- jobs wait for a free slot instead of failing, and run one after another on a one-slot host;
- several run side by side on multi-slot hosts, never more at once than a host's slots;
- a host that can't run jobs (its runner image gone) costs nobody anything: its attempts end
  as host faults, uncharged, the jobs run elsewhere, and the host ends not ready, saying why.

The two-servers-on-one-engine test is tests/jobs/test_shared_engine_live.py; the stalled
server ones are in tests/agent/test_agent_outage.py. Needs PostgreSQL, Redis and Docker.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from config.transactions import durable_call
from hosts.models import Host
from jobs.models import AttemptStatus, Job, JobAttempt, JobStatus
from jobs.selectors import job_facts
from ledger.models import LedgerTransaction, TransactionKind
from ledger.providers import providers
from ledger.services import ledger_reconcile, wallet_credit
from tests.jobs.metering_steps import captured, charged
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
# A job of about a second and a half in its container; half a core, so that the slots (not
# this machine's two cores) are what limits how many run at once.
NAP = "import time\ntime.sleep(1.5)\nprint('done', flush=True)\n"


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
def renter(alice: User, client_for: Callable[[User], Any]) -> Any:
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=FUNDS,
        key="scheduling-live-fund",
        reason="test",
        source="purchase",
    )
    return client_for(alice)


@pytest.fixture
def make_agent(
    server: LiveServer, tmp_path: Path, hana: User, client_for: Callable[[User], Any]
) -> Iterator[Callable[..., RealAgent]]:
    agents: list[RealAgent] = []

    def make(name: str, slots: int, *, image: str = RUNNER_IMAGE, **rates: int) -> RealAgent:
        token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
        env = {"COMMUNIPUTE_SLOTS": str(slots), "COMMUNIPUTE_RUNNER_IMAGE": image}
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


def submit(client: Any, count: int) -> list[int]:
    body = {
        "code": NAP,
        "placement": "auto",
        "cpus": 0.5,
        "memory_mb": 512,
        "timeout_seconds": 60,
        "max_cost_micros": CAP,
    }
    ids = []
    for _ in range(count):
        response = client.post("/api/v1/jobs/", body, format="json")
        assert response.status_code == 201, response.json()
        ids.append(int(response.json()["id"]))
    return ids


def settled(job_ids: list[int], timeout: float = 120) -> list[Job]:
    """Every job ended and its hold released (the beat posts and settles meanwhile)."""
    wait_for(
        lambda: (
            Job.objects.filter(pk__in=job_ids, hold_released_at__isnull=False).count()
            == len(job_ids)
        ),
        f"{len(job_ids)} jobs settled",
        timeout,
    )
    return list(Job.objects.filter(pk__in=job_ids).order_by("pk"))


def assert_succeeded_and_charged_once(jobs: list[Job]) -> None:
    """Every job succeeded; its one succeeded attempt was charged exactly the job's cost, in
    one chain of captures with no reversal; the ledger reconciles."""
    for job in jobs:
        assert job.status == JobStatus.SUCCEEDED, (job.pk, job.status, job.status_reason)
        [ran] = JobAttempt.objects.filter(job=job, status=AttemptStatus.SUCCEEDED)
        assert ran.fault == ""
        assert 0 < job.cost_micros == ran.charged_micros == captured(job, ran.number)
        assert charged(job) == captured(job) == job.cost_micros
        assert not LedgerTransaction.objects.filter(
            job_id=job.pk, kind=TransactionKind.REVERSAL
        ).exists()
    assert ledger_reconcile(job_facts=job_facts).problems == []


def run_intervals(host_id: int) -> list[tuple[datetime, datetime]]:
    """When each attempt that ran on the host held it: accepted until finished."""
    rows = JobAttempt.objects.filter(host_id=host_id, accepted_at__isnull=False)
    intervals = []
    for start, end in rows.values_list("accepted_at", "finished_at"):
        assert start is not None
        assert end is not None
        intervals.append((start, end))
    return sorted(intervals)


def peak(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an end at the instant another starts: apart)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


# --- the tests -------------------------------------------------------------------------------


def test_three_jobs_at_once_to_a_one_slot_host_all_succeed_in_turn(
    server, beat, make_agent, renter
):
    # given: one host with one slot
    agent = make_agent("single", slots=1)
    started = time.monotonic()

    # when: three jobs are submitted at once
    job_ids = submit(renter, 3)

    # then: the two that find the slot taken wait in the queue, saying why
    wait_for(
        lambda: (
            Job.objects.filter(pk__in=job_ids, status=JobStatus.QUEUED)
            .exclude(waiting_reason="")
            .exists()
        ),
        "a job waiting for the slot",
    )
    waiting = renter.get(f"/api/v1/jobs/{job_ids[2]}/").json()
    if waiting["status"] == "queued":
        assert "busy" in waiting["waiting_reason"], waiting

    # and: all three succeed, one after another, each charged once; nothing failed
    jobs = settled(job_ids)
    print(f"3 jobs on a one-slot host settled in {time.monotonic() - started:.1f} s")
    assert_succeeded_and_charged_once(jobs)
    intervals = run_intervals(agent.host_id)
    assert len(intervals) == 3
    assert peak(intervals) == 1, intervals
    assert not JobAttempt.objects.exclude(status=AttemptStatus.SUCCEEDED).exists()


def test_eight_jobs_on_a_three_slot_and_a_two_slot_host_all_succeed_within_their_slots(
    server, beat, make_agent, renter
):
    # given: two hosts, of three slots and two
    three = make_agent("three", slots=3)
    two = make_agent("two", slots=2)
    started = time.monotonic()

    # when: eight jobs are submitted at once
    job_ids = submit(renter, 8)

    # then: all succeed, each charged once, none failed or lost
    jobs = settled(job_ids)
    print(f"8 jobs on 3+2 slots settled in {time.monotonic() - started:.1f} s")
    assert_succeeded_and_charged_once(jobs)
    assert not JobAttempt.objects.filter(
        status__in=[AttemptStatus.FAILED, AttemptStatus.LOST]
    ).exists()

    # and: never more at once on a host than its slots; side by side where it has several
    on_three, on_two = run_intervals(three.host_id), run_intervals(two.host_id)
    assert len(on_three) + len(on_two) == 8
    print(f"peaks: {peak(on_three)} of 3 slots, {peak(on_two)} of 2")
    assert 2 <= peak(on_three) <= 3, on_three
    assert peak(on_two) <= 2, on_two
    assert peak(on_three + on_two) >= 3


NEVER_IMAGE = "communipute/runner:live12-never-built"


@pytest.fixture
def vanishing_image() -> Iterator[str]:
    """A tag of the runner image that the test removes while an agent uses it."""
    tag = "communipute/runner:live12-vanishing"
    subprocess.run(["docker", "tag", RUNNER_IMAGE, tag], check=True)
    yield tag
    subprocess.run(["docker", "rmi", tag], capture_output=True)


def test_a_host_whose_runner_image_is_gone_charges_nothing_and_ends_not_ready(
    server, beat, make_agent, renter, vanishing_image
):
    # given: a cheap host, first in the placement order, whose runner image vanishes once it
    # said it is ready (so it is offered jobs it can't run), beside a dearer good host
    cheap = RATES["cpu_core_hour_micros"] // 2
    bad = make_agent("bad", slots=2, image=vanishing_image, cpu_core_hour_micros=cheap)
    good = make_agent("good", slots=2)
    assert Host.objects.get(pk=bad.host_id).is_ready
    # and: the cheapest of all, whose agent is set to an image that never existed: not ready
    # from its first hello, so offered nothing
    never = make_agent("never", slots=2, image=NEVER_IMAGE, cpu_core_hour_micros=cheap // 2)
    host = Host.objects.get(pk=never.host_id)
    assert not host.is_ready
    assert NEVER_IMAGE in host.not_ready_reason
    subprocess.run(["docker", "rmi", vanishing_image], check=True, capture_output=True)
    started = time.monotonic()

    # when: jobs are placed by the marketplace
    job_ids = submit(renter, 4)

    # then: every one succeeds, on the good host, charged once
    jobs = settled(job_ids)
    print(f"4 jobs beside a host without its image settled in {time.monotonic() - started:.1f} s")
    assert_succeeded_and_charged_once(jobs)
    assert set(
        JobAttempt.objects.filter(status=AttemptStatus.SUCCEEDED).values_list("host", flat=True)
    ) == {good.host_id}

    # and: the bad host charged nothing; whatever it was given ended as its fault (a sentence
    # for the renter, the engine's words for the owner)
    on_bad = list(JobAttempt.objects.filter(host_id=bad.host_id))
    assert on_bad, "the bad host was never offered a job: nothing was tested"
    for attempt in on_bad:
        assert attempt.status in (AttemptStatus.LOST, AttemptStatus.REJECTED), attempt
        assert attempt.charged_micros == attempt.reversed_micros == 0
        if attempt.status == AttemptStatus.LOST:
            assert attempt.fault == "host"
            assert "Server Error" not in attempt.reason, attempt.reason
            assert "live12-vanishing" in attempt.fault_detail, attempt.fault_detail

    assert not JobAttempt.objects.filter(host_id=never.host_id).exists()
    assert _owner_host(never.host_id)["not_ready_reason"] == host.not_ready_reason

    # and: the bad host ends not ready (or quarantined), and its owner sees why
    host = wait_for(
        lambda: (
            Host.objects.filter(pk=bad.host_id, is_ready=False).first()
            or Host.objects.filter(pk=bad.host_id, fault_quarantined_at__isnull=False).first()
        ),
        "the bad host not ready",
    )
    print(f"bad host: ready={host.is_ready} ({host.not_ready_reason}); faults {host.host_faults}")
    if not host.is_ready:
        assert "live12-vanishing" in host.not_ready_reason, host.not_ready_reason
    owner_view = _owner_host(bad.host_id)
    assert owner_view["is_ready"] is False or owner_view["fault_quarantined_at"], owner_view
    assert owner_view["not_ready_reason"] or owner_view["last_fault_detail"], owner_view


def _owner_host(host_id: int) -> dict[str, Any]:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(Host.objects.get(pk=host_id).owner)
    response = client.get(f"/api/v1/my/hosts/{host_id}/")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body
