"""Issue 11 over a real socket: a hostile host takes no money it didn't earn.

A real daphne (``tests.live.LiveServer``, PostgreSQL and Redis as in CI) and a hostile host
played by the test (``tests.live.WireAgent``): enrolled with a real token, connected with its
real credential through the ``websockets`` client, speaking docs/protocol.md however the
attack needs. Nothing of the server is mocked. This process runs what Celery would — the
poster (``usage_charges_post``), the reaper (``jobs_reap_pass``), maturity — and the API.

Each test asserts exactly what moved: the renter's wallet, the owner's earnings (pending,
available, in payouts), ``platform_loss``, and a clean reconciliation (ledger/services/
reconcile.py, with the jobs app's facts: payouts within matured earnings, platform_loss only on
its paths, escrow of finished jobs empty, charges within caps, cost = charges).

Rates: 10 µcr per CPU-millisecond and, for the 512 MB the jobs reserve, 5 µcr per wall
millisecond (``cost``), so an expected bill is plain integer arithmetic on the billable
counters that the test derives from the server's own timestamps.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import User
from config.transactions import durable_call
from hosts.models import Host
from jobs.models import Job, JobAttempt, JobOutput
from jobs.selectors import job_facts
from jobs.tasks import jobs_reap_pass, usage_charges_post
from ledger.models import AccountKind
from ledger.payments.models import ConnectedAccount, OnboardingStatus
from ledger.providers import providers
from ledger.services import earnings_mature, ledger_reconcile, wallet_credit
from tests.jobs.metering_steps import charged, fee_of
from tests.ledger.helpers import balance
from tests.live import RATES, LiveServer, WireAgent, cost, live_settings_apply

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

FUNDS = 50_000_000
CAP = 5_000_000
CPUS = 2
# 36 credits per core-hour of CPU and per GB-hour: 10 µcr per CPU-ms, 5 µcr per wall-ms of 512 MB.


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _jobs_known_to_the_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    """Maturity and reconciliation read the jobs app's facts, as in production."""
    monkeypatch.setattr(providers, "job_facts", job_facts)


@pytest.fixture
def funded(alice: User, hana: User, settings: Any) -> None:
    settings.PAYMENT_PROVIDER = "demo"  # the payout's transfer goes to the demo provider
    for user in (alice, hana):
        durable_call(
            wallet_credit,
            user=user,
            amount_micros=FUNDS,
            key=f"fund-{user.pk}",
            reason="test",
            source="purchase",
        )
    ConnectedAccount.objects.create(
        user=hana,
        provider="demo",
        stripe_account_id="demo_acct_hostile",
        onboarding_status=OnboardingStatus.COMPLETE,
    )


@pytest.fixture
def daphne_live(daphne_live_shared: LiveServer, settings: Any) -> Iterator[LiveServer]:
    """One daphne for the module (tests/conftest.py), its settings applied to this test; no
    attack may make it fail: nothing it logged during the test is a traceback."""
    start = len(daphne_live_shared.log.read_bytes())
    yield live_settings_apply(settings, daphne_live_shared)
    logged = daphne_live_shared.log.read_bytes()[start:].decode(errors="replace")
    assert "Traceback" not in logged, logged[-4000:]
    assert "internal_error" not in logged, logged[-4000:]


@pytest.fixture
def hostile(
    daphne_live: LiveServer, hana: User, client_for: Callable[[User], Any], funded: None
) -> Iterator[WireAgent]:
    """hana's host, enrolled for real, online with the metering rates; its agent is the test."""
    agent = WireAgent.enroll(daphne_live, client_for(hana))
    Host.objects.filter(pk=agent.host_id).update(**RATES)
    agent.connect()
    yield agent
    agent.hang_up()


# --- steps -----------------------------------------------------------------------------------


def submit(api: Any, host_id: int, **extra: Any) -> int:
    body = {
        "code": "print('hi')",
        "host": host_id,
        "cpus": CPUS,
        "memory_mb": 512,
        "timeout_seconds": 600,
        "max_cost_micros": CAP,
        **extra,
    }
    response = api.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


def post() -> None:
    """The batch poster, as Celery beat runs it (one durable transaction)."""
    usage_charges_post()


def ref(job_id: int, attempt: int = 1) -> dict[str, int]:
    return {"job_id": job_id, "attempt": attempt}


def ms(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds() * 1000))


def attempt_of(job_id: int, number: int = 1) -> JobAttempt:
    return JobAttempt.objects.select_related("job").get(job_id=job_id, number=number)


def money(owner: User, renter: User) -> dict[str, int]:
    return {
        "wallet": balance(AccountKind.WALLET, user=renter),
        "pending": balance(AccountKind.EARNINGS_PENDING, user=owner),
        "available": balance(AccountKind.EARNINGS_AVAILABLE, user=owner),
        "in_payouts": balance(AccountKind.PAYOUTS_CLEARING),
        "platform_loss": balance(AccountKind.PLATFORM_LOSS),
    }


def running_money(bill: int) -> dict[str, int]:
    """The figures while a job still runs: its cap held, its charges pending for the owner."""
    return {
        "wallet": FUNDS - CAP,
        "pending": bill - fee_of(bill),
        "available": 0,
        "in_payouts": 0,
        "platform_loss": 0,
    }


def settled_money(bill: int) -> dict[str, int]:
    """The figures once the job settled: the wallet paid the bill, the owner's share pending."""
    return {
        "wallet": FUNDS - bill,
        "pending": bill - fee_of(bill),
        "available": 0,
        "in_payouts": 0,
        "platform_loss": 0,
    }


def finished_data(
    job_id: int, seq: int, *, cpu: float, wall: float, outputs: list[Any] | None = None
) -> dict[str, Any]:
    """A ``job.finished`` (succeeded) whose final report says ``cpu`` and ``wall`` seconds."""
    usage = {**ref(job_id), "seq": seq, "cpu_seconds": cpu, "wall_seconds": wall}
    usage |= {"memory_peak_mb": 64, "memory_current_mb": 0, "gpu_seconds": 0.0, "is_final": True}
    return {
        **ref(job_id),
        "status": "succeeded",
        "reason": "exit code 0",
        "exit_code": 0,
        "outputs": outputs or [],
        "usage": usage,
    }


def assert_reconciled() -> None:
    report = ledger_reconcile(job_facts=job_facts)
    assert report.problems == []
    assert {"payouts_within_matured", "platform_loss_paths", "job_cost_matches_charges"} <= set(
        report.checks
    ), report.checks


def billed_for(cpu_ms: int, wall_ms: int, window_ms: int) -> int:
    """What the counters may cost inside a billable window: wall clipped to it, CPU to that
    wall x the job's cores (docs/metering.md)."""
    wall = min(wall_ms, window_ms)
    return cost(min(cpu_ms, wall * CPUS), wall)


def payout(api: Any, amount: int) -> Any:
    return api.post(
        "/api/v1/payouts/",
        {"amount_micros": amount},
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"payout-{time.monotonic_ns()}",
    )


# --- payout, then lose the attempt ------------------------------------------------------------


@pytest.mark.parametrize(
    ("renter_is_owner", "lose"),
    [(False, "reconnect"), (True, "reconnect"), (True, "silence")],
    ids=["other_renter-reconnects_without_it", "own_job-reconnects_without_it", "own_job-silent"],
)
def test_payout_then_lose_the_attempt_pays_nothing_out(
    hostile, alice, hana, client_for, renter_is_owner, lose
):
    # given: a long job at the host's rates (the owner's own job, or alice's); the host reports
    # honestly for a while and the poster charges it; the dispute window is 1 s
    renter = hana if renter_is_owner else alice
    job_id = submit(client_for(renter), hostile.host_id)
    hostile.run(job_id)
    time.sleep(2.2)
    ack = hostile.usage(job_id, 1, cpu=2.0, wall=2.0)
    assert ack["type"] == "usage.ack", ack
    post()
    bill = cost(2_000, 2_000)
    assert charged(Job.objects.get(pk=job_id)) == bill
    before = money(hana, renter)
    assert before == {
        "wallet": FUNDS - CAP,
        "pending": bill - fee_of(bill),
        "available": 0,
        "in_payouts": 0,
        "platform_loss": 0,
    }

    # when: the window passes (and more) while the attempt runs; the owner asks for a payout
    time.sleep(1.2)
    matured = earnings_mature(now=timezone.now() + timedelta(days=30))
    refused = payout(client_for(hana), 10_000)  # a cent of the 27,000 µcr earned

    # then: nothing matured (the job has not settled), so nothing is paid out
    assert matured == 0
    assert refused.status_code == 402, refused.json()
    assert refused.json()["error"]["code"] == "insufficient_earnings"
    assert money(hana, renter) == before

    # and when: the agent reconnects without the job, or falls silent past its lease (the
    # reaper loses it); it is the last attempt the job may have
    Job.objects.filter(pk=job_id).update(max_attempts=1)
    if lose == "reconnect":
        welcome = hostile.connect(running_jobs=[])
        assert (welcome["kill_jobs"], welcome["keep_jobs"]) == ([], [])
    else:
        lease = attempt_of(job_id).lease_expires_at
        assert lease is not None
        time.sleep(max(0.0, (lease - timezone.now()).total_seconds()) + 0.2)
        assert jobs_reap_pass().attempts_lost == 1
    job = Job.objects.get(pk=job_id)

    # then: the attempt is lost and reversed; the renter pays nothing, the owner keeps
    # nothing, the platform loses nothing; and later maturity or payouts find nothing
    assert (job.status, attempt_of(job_id).status, charged(job)) == ("failed", "lost", 0)
    assert job.hold_released_at is not None
    assert earnings_mature(now=timezone.now() + timedelta(days=30)) == 0
    assert payout(client_for(hana), 10_000).status_code == 402
    assert money(hana, renter) == {
        "wallet": FUNDS,
        "pending": 0,
        "available": 0,
        "in_payouts": 0,
        "platform_loss": 0,
    }
    assert balance(AccountKind.REVENUE) == 0
    assert_reconciled()


# --- another host's job ------------------------------------------------------------------------


def test_a_stranger_host_cannot_touch_another_hosts_attempt(
    hostile, daphne_live, alice, hana, mallory, client_for
):
    # given: alice's job runs on hana's host; mallory enrolls a host of her own
    job_id = submit(client_for(alice), hostile.host_id)
    hostile.run(job_id)
    intruder = WireAgent.enroll(daphne_live, client_for(mallory), name="intruder")
    Host.objects.filter(pk=intruder.host_id).update(**RATES)
    intruder.connect(running_jobs=[ref(job_id)])
    time.sleep(1.0)
    before = attempt_of(job_id)

    # when: mallory's agent sends every job message for that attempt, and uploads to it
    codes = [
        intruder.ask("job.accept", ref(job_id))["data"].get("code"),
        intruder.ask("job.started", {**ref(job_id), "phase": "running"})["data"].get("code"),
        intruder.usage(job_id, 1, cpu=1.0, wall=1.0)["data"].get("code"),
        intruder.ask("job.log", {**ref(job_id), "offset": 0, "data": "mine\n"})["data"].get("code"),
        intruder.ask(
            "job.finished",
            {
                **ref(job_id),
                "status": "failed",
                "reason": "exit code 1",
                "exit_code": 1,
                "outputs": [],
                "usage": {
                    **ref(job_id),
                    "seq": 2,
                    "cpu_seconds": 1.0,
                    "wall_seconds": 1.0,
                    "memory_peak_mb": 1,
                    "memory_current_mb": 0,
                    "gpu_seconds": 0.0,
                    "is_final": True,
                },
            },
        )["data"].get("code"),
    ]
    upload = intruder.upload(job_id, 1, "answer.txt", b"forged")
    post()

    # then: all refused as not its job; the attempt, its log and its money are hana's alone
    assert codes == ["not_your_job"] * 5
    assert upload.status_code == 404
    attempt = attempt_of(job_id)
    assert (attempt.status, attempt.host_id) == ("running", hostile.host_id)
    assert (attempt.usage_seq, attempt.log_offset, attempt.usage) == (
        before.usage_seq,
        before.log_offset,
        before.usage,
    )
    assert charged(Job.objects.get(pk=job_id)) == 0
    assert balance(AccountKind.EARNINGS_PENDING, user=mallory) == 0
    assert money(hana, alice) == running_money(0)
    intruder.hang_up()
    assert_reconciled()


# --- the server enforces what it decided: cancel and timeout -----------------------------------


def test_a_cancel_the_host_ignores_is_billed_only_to_the_cancel_and_the_grace(
    hostile, alice, hana, client_for, settings
):
    # given: alice's job runs on the hostile host; alice cancels it after a second
    renter = client_for(alice)
    job_id = submit(renter, hostile.host_id)
    hostile.run(job_id)
    time.sleep(1.0)
    assert renter.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
    told = hostile.expect(lambda m: m["type"] == "job.cancel")["data"]
    assert (told["job_id"], told["attempt"]) == (job_id, 1)

    # when: the host ignores it and goes on reporting full use of both cores, by the clock
    time.sleep(settings.JOB_STOP_GRACE_SECONDS + 1.0)
    attempt = attempt_of(job_id)
    assert attempt.started_at is not None
    assert attempt.job.cancel_requested_at is not None
    wall = ms(attempt.started_at, timezone.now())
    assert hostile.usage(job_id, 1, cpu=wall * CPUS / 1000, wall=wall / 1000)["type"] == (
        "usage.ack"
    )
    post()

    # then: billed up to the cancel + the stop grace, on the server's clock, not beyond
    deadline = attempt.job.cancel_requested_at + timedelta(seconds=settings.JOB_STOP_GRACE_SECONDS)
    bill = billed_for(wall * CPUS, wall, ms(attempt.started_at, deadline))
    assert bill < cost(wall * CPUS, wall)
    assert charged(Job.objects.get(pk=job_id)) == bill

    # and when: it still holds the attempt (heartbeats) a lease past that, the reaper ends it
    late = deadline + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    running = [ref(job_id)]
    hostile.keep_alive(max(0.0, (late - timezone.now()).total_seconds()) + 0.3, running)
    reaped = jobs_reap_pass()

    # then: cancelled by the server, settled, the host flagged and told to stop
    job = Job.objects.get(pk=job_id)
    assert (reaped.attempts_overrun, reaped.attempts_lost) == (1, 0)
    assert (job.status, attempt_of(job_id).status) == ("cancelled", "cancelled")
    assert job.hold_released_at is not None
    host = Host.objects.get(pk=hostile.host_id)
    assert (host.flagged_reports, host.last_flag_reason) == (1, "cancel_ignored")
    stop = hostile.expect(
        lambda m: m["type"] == "job.cancel" and "server ended it" in m["data"]["reason"]
    )
    assert stop["data"]["job_id"] == job_id
    # later reports are acknowledged with stop and charge nothing more
    later = hostile.usage(job_id, 2, cpu=(wall + 5000) * CPUS / 1000, wall=(wall + 5000) / 1000)
    assert (later["type"], later["data"]["stop"]) == ("usage.ack", True)
    post()
    assert charged(job) == bill
    assert money(hana, alice) == settled_money(bill)
    assert_reconciled()


def test_a_timeout_the_host_ignores_is_billed_only_to_the_timeout_and_the_grace(
    hostile, alice, hana, client_for, settings
):
    # given: a job with a 1 s timeout; the host runs it and never stops
    job_id = submit(client_for(alice), hostile.host_id, timeout_seconds=1)
    hostile.run(job_id)
    grace = settings.JOB_STOP_GRACE_SECONDS

    # when: it reports full use well past the timeout and the grace
    time.sleep(1 + grace + 1.0)
    attempt = attempt_of(job_id)
    assert attempt.started_at is not None
    wall = ms(attempt.started_at, timezone.now())
    assert hostile.usage(job_id, 1, cpu=wall * CPUS / 1000, wall=wall / 1000)["type"] == (
        "usage.ack"
    )
    post()

    # then: billed for the timeout + the grace only
    deadline = attempt.started_at + timedelta(seconds=1 + grace)
    bill = billed_for(wall * CPUS, wall, ms(attempt.started_at, deadline))
    assert bill == cost((1 + grace) * 1000 * CPUS, (1 + grace) * 1000)
    assert charged(Job.objects.get(pk=job_id)) == bill

    # and when: a lease later it still holds it, the reaper times it out
    late = deadline + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    hostile.keep_alive(max(0.0, (late - timezone.now()).total_seconds()) + 0.3, [ref(job_id)])
    reaped = jobs_reap_pass()
    job = Job.objects.get(pk=job_id)
    assert (reaped.attempts_overrun, reaped.attempts_lost) == (1, 0)
    assert (job.status, attempt_of(job_id).status) == ("timed_out", "timed_out")
    assert job.hold_released_at is not None
    host = Host.objects.get(pk=hostile.host_id)
    assert (host.flagged_reports, host.last_flag_reason) == (1, "timeout_ignored")
    stop = hostile.expect(lambda m: m["type"] == "job.cancel" and m["data"]["job_id"] == job_id)
    assert stop["data"]["reason"].startswith("timed out after 1 s")
    assert charged(job) == bill
    assert money(hana, alice) == settled_money(bill)
    assert_reconciled()


def test_an_attempt_kept_preparing_forever_is_ended_by_the_reaper(
    hostile, alice, hana, client_for, settings
):
    # given: the host accepts and says it is installing, then only heartbeats (the renter's
    # cap stays held while it does: nothing is billed, and the timeout counts from running)
    job_id = submit(client_for(alice), hostile.host_id)
    Job.objects.filter(pk=job_id).update(max_attempts=1)
    hostile.offer(job_id)
    assert hostile.ask("job.accept", ref(job_id))["type"] == "ack"
    assert hostile.ask("job.started", {**ref(job_id), "phase": "preparing"})["type"] == "ack"
    accepted = attempt_of(job_id).accepted_at
    assert accepted is not None

    # when: it keeps the attempt preparing past JOB_PREPARE_MAX_SECONDS and a lease
    late = accepted + timedelta(
        seconds=settings.JOB_PREPARE_MAX_SECONDS + settings.JOB_LEASE_SECONDS
    )
    hostile.keep_alive(max(0.0, (late - timezone.now()).total_seconds()) + 0.3, [ref(job_id)])
    reaped = jobs_reap_pass()

    # then: the server ends it as the host's loss (nothing was billed), flags the host, tells
    # it to stop; the job (no retries left) fails and the renter gets the whole cap back
    job = Job.objects.get(pk=job_id)
    assert reaped.attempts_overrun == 1
    assert (job.status, attempt_of(job_id).status) == ("failed", "lost")
    assert job.hold_released_at is not None
    host = Host.objects.get(pk=hostile.host_id)
    assert (host.flagged_reports, host.last_flag_reason) == (1, "start_overdue")
    stop = hostile.expect(lambda m: m["type"] == "job.cancel" and m["data"]["job_id"] == job_id)
    assert stop["data"]["reason"].startswith("stale attempt")
    assert money(hana, alice) == {
        "wallet": FUNDS,
        "pending": 0,
        "available": 0,
        "in_payouts": 0,
        "platform_loss": 0,
    }
    assert_reconciled()


# --- tolerances are not free money -------------------------------------------------------------


def test_a_report_ahead_of_the_clock_is_billed_only_to_the_server_clock(
    hostile, alice, hana, client_for
):
    # given: a job the server saw start a moment ago
    job_id = submit(client_for(alice), hostile.host_id)
    hostile.run(job_id)
    started = attempt_of(job_id).started_at
    assert started is not None

    # when: the host claims 4 s of wall time (inside the 5 s a report may run ahead)
    accepted = hostile.usage(job_id, 1, cpu=8.0, wall=4.0)
    post()
    posted_by = timezone.now()

    # then: accepted, but billed for what the server saw pass (+ its 1 s tolerance) only
    assert accepted["type"] == "usage.ack"
    seen = ms(started, posted_by) + 1000
    assert seen < 4000
    bill = charged(Job.objects.get(pk=job_id))
    assert 0 < bill <= cost(seen * CPUS, seen) < cost(8_000, 4_000)

    # and when: it claims more than 5 s ahead, it is refused and flagged
    refused = hostile.usage(job_id, 2, cpu=8.0, wall=ms(started, timezone.now()) / 1000 + 6.0)
    assert (refused["type"], refused["data"]["code"]) == ("error", "usage_refused")
    assert refused["data"]["message"].startswith("wall_ahead_of_server")
    post()
    assert charged(Job.objects.get(pk=job_id)) == bill
    assert Host.objects.get(pk=hostile.host_id).flagged_reports == 1
    assert money(hana, alice) == running_money(bill)

    # and when: it finishes at once, its final report repeating the 4 s claim
    finished = hostile.ask("job.finished", finished_data(job_id, 3, cpu=8.0, wall=4.0))

    # then: the bill is exactly the server's window, from started_at to finished_at (+ 1 s)
    assert finished["type"] == "ack", finished
    attempt = attempt_of(job_id)
    assert attempt.finished_at is not None
    window = ms(started, attempt.finished_at) + 1000
    assert window < 4000
    bill = billed_for(8_000, 4_000, window)
    job = Job.objects.get(pk=job_id)
    assert (job.status, charged(job), job.hold_released_at is not None) == (
        "succeeded",
        bill,
        True,
    )
    assert money(hana, alice) == settled_money(bill)
    assert_reconciled()


def test_cpu_within_the_refusal_tolerance_is_billed_only_to_the_jobs_cores(
    hostile, alice, hana, client_for
):
    # given: a 2-core job running for 2 s
    job_id = submit(client_for(alice), hostile.host_id)
    hostile.run(job_id)
    time.sleep(2.0)

    # when: the host reports 1 s of wall and CPU just inside the check (2 cores x 1.02 + 1 s)
    accepted = hostile.usage(job_id, 1, cpu=2 * 1.0 * 1.02 + 0.9, wall=1.0)
    post()

    # then: accepted, billed 2 core-seconds, not 2.94
    assert accepted["type"] == "usage.ack"
    bill = cost(2_000, 1_000)
    assert charged(Job.objects.get(pk=job_id)) == bill

    # and when: beyond the check (the host's 8 cores, not the job's 2), refused and flagged
    refused = hostile.usage(job_id, 2, cpu=8 * 1.5, wall=1.5)
    assert (refused["type"], refused["data"]["code"]) == ("error", "usage_refused")
    assert refused["data"]["message"].startswith("cpu_exceeds_wall")
    post()
    assert charged(Job.objects.get(pk=job_id)) == bill
    host = Host.objects.get(pk=hostile.host_id)
    assert (host.flagged_reports, host.last_flag_reason) == (1, "cpu_exceeds_wall")
    assert money(hana, alice) == running_money(bill)
    assert_reconciled()


def test_usage_before_started_running_is_never_billed(hostile, alice, hana, client_for):
    # given: accepted and installing (preparing) for a while
    job_id = submit(client_for(alice), hostile.host_id)
    hostile.offer(job_id)
    assert hostile.ask("job.accept", ref(job_id))["type"] == "ack"
    assert hostile.ask("job.started", {**ref(job_id), "phase": "preparing"})["type"] == "ack"
    time.sleep(1.5)

    # when: it reports the install time as usage
    accepted = hostile.usage(job_id, 1, cpu=1.4, wall=1.4)
    post()

    # then: accepted (it is possible) but not billed: nothing ran yet
    assert accepted["type"] == "usage.ack"
    assert charged(Job.objects.get(pk=job_id)) == 0

    # and when: it runs for a moment and finishes, reporting the install time in the total
    assert hostile.ask("job.started", {**ref(job_id), "phase": "running"})["type"] == "ack"
    time.sleep(0.5)
    started = attempt_of(job_id).started_at
    assert started is not None
    finished = hostile.ask("job.finished", finished_data(job_id, 2, cpu=3.0, wall=3.0))
    assert finished["type"] == "ack", finished

    # then: billed for the running part the server saw (+ 1 s) only
    attempt = attempt_of(job_id)
    assert attempt.finished_at is not None
    window = ms(started, attempt.finished_at) + 1000
    bill = billed_for(3_000, 3_000, window)
    assert bill < cost(3_000, 3_000)
    job = Job.objects.get(pk=job_id)
    assert (job.status, charged(job), job.hold_released_at is not None) == (
        "succeeded",
        bill,
        True,
    )
    assert money(hana, alice) == settled_money(bill)
    assert_reconciled()


def test_a_full_core_claimed_for_an_idle_job_is_billed_at_most_wall_x_the_jobs_cores(
    hostile, alice, hana, client_for
):
    """The server can't see inside a container: a host may claim its job kept every core it
    was given busy. What billing allows is exactly that bound (wall x the job's cores, on the
    server's clock), never the host's cores: the renter's cap and their choice of host are the
    rest of the protection (docs/metering.md)."""
    # given: a 2-core job that only sleeps
    job_id = submit(
        client_for(alice), hostile.host_id, code="import time\ntime.sleep(60)\n", cpus=CPUS
    )
    hostile.run(job_id)
    time.sleep(2.0)

    # when: the host claims both cores busy all along, then every core of the machine
    claimed = hostile.usage(job_id, 1, cpu=2.0 * CPUS, wall=2.0)
    post()
    over = hostile.usage(job_id, 2, cpu=2.5 * 8, wall=2.5)
    post()

    # then: the first is billed at the bound, the second refused, flagged, not billed
    assert claimed["type"] == "usage.ack"
    bill = cost(2_000 * CPUS, 2_000)
    assert (over["type"], over["data"]["code"]) == ("error", "usage_refused")
    assert charged(Job.objects.get(pk=job_id)) == bill
    assert Host.objects.get(pk=hostile.host_id).flagged_reports == 1
    assert money(hana, alice) == running_money(bill)
    assert_reconciled()


# --- flags have consequences ---------------------------------------------------------------------


def test_refused_reports_quarantine_the_host_no_offers_and_nothing_paid(
    hostile, alice, hana, client_for, settings
):
    # given: a running job
    renter = client_for(alice)
    job_id = submit(renter, hostile.host_id)
    hostile.run(job_id)

    # when: the host sends HOST_QUARANTINE_FLAGS (3) impossible reports
    codes = [
        hostile.usage(job_id, seq, cpu=100.0 * seq, wall=1.0)["data"].get("code")
        for seq in range(1, settings.HOST_QUARANTINE_FLAGS + 1)
    ]
    post()

    # then: each refused, none paid; the host is quarantined with the reason
    assert codes == ["usage_refused"] * settings.HOST_QUARANTINE_FLAGS
    host = Host.objects.get(pk=hostile.host_id)
    assert host.flagged_reports == settings.HOST_QUARANTINE_FLAGS
    assert host.quarantined_at is not None
    assert "cpu_exceeds_wall" in host.quarantine_reason
    assert charged(Job.objects.get(pk=job_id)) == 0
    mine = client_for(hana).get(f"/api/v1/my/hosts/{hostile.host_id}/").json()
    assert mine["quarantined_at"] is not None
    assert "cpu_exceeds_wall" in mine["quarantine_reason"]

    # and when: alice submits more jobs, placed by the marketplace or on this very host, while
    # the host is connected and the reaper offers what waits
    body = {"code": "print(1)", "cpus": CPUS, "memory_mb": 512, "timeout_seconds": 60}
    body["max_cost_micros"] = CAP
    auto = renter.post("/api/v1/jobs/", {**body, "placement": "auto"}, format="json")
    chosen = renter.post("/api/v1/jobs/", {**body, "host": hostile.host_id}, format="json")
    jobs_reap_pass()

    # then: it fits nothing (it is the only host), nothing is held, and nothing is offered
    assert (auto.status_code, auto.json()["error"]["code"]) == (409, "no_host_fits")
    assert (chosen.status_code, chosen.json()["error"]["code"]) == (400, "host_unfit")
    offers = [m for m in hostile.drain_inbox(1.5) if m["type"] == "job.offer"]
    assert offers == []
    assert Job.objects.count() == 1
    assert money(hana, alice) == {
        "wallet": FUNDS - CAP,
        "pending": 0,
        "available": 0,
        "in_payouts": 0,
        "platform_loss": 0,
    }
    assert_reconciled()


def test_a_quarantined_host_is_not_listed_in_the_catalog(hostile, alice, client_for, settings):
    # given: a quarantined host, still connected
    job_id = submit(client_for(alice), hostile.host_id)
    hostile.run(job_id)
    for seq in range(1, settings.HOST_QUARANTINE_FLAGS + 1):
        hostile.usage(job_id, seq, cpu=100.0 * seq, wall=1.0)
    assert Host.objects.get(pk=hostile.host_id).quarantined_at is not None
    # when
    listing = client_for(alice).get("/api/v1/hosts/").json()["results"]
    # then
    listed = [(h["id"], h["is_accepting_jobs"]) for h in listing if h["is_accepting_jobs"]]
    assert listed == []


# --- refuse at the edge ------------------------------------------------------------------------

OUT_OF_RANGE = {
    "cpu 1e300": ("cpu_seconds", 1e300),
    "seq 2**63": ("seq", 2**63),
    "cpu NaN": ("cpu_seconds", math.nan),
    "memory 2**40 MB": ("memory_peak_mb", 2**40),
    "wall Infinity": ("wall_seconds", math.inf),
    "negative wall": ("wall_seconds", -1.0),
}


def test_out_of_range_numbers_are_bad_field_refusals_that_change_nothing(
    hostile, daphne_live, alice, hana, client_for
):
    # given: a running job
    job_id = submit(client_for(alice), hostile.host_id)
    hostile.run(job_id)
    time.sleep(1.0)

    # when: each out-of-range number, in an otherwise good report
    seq_before = attempt_of(job_id).usage_seq
    answers = {}
    for name, (field, value) in OUT_OF_RANGE.items():
        data = {**ref(job_id), "seq": 1, "cpu_seconds": 0.5, "wall_seconds": 0.5}
        data |= {"memory_peak_mb": 64, "memory_current_mb": 32, "gpu_seconds": 0.0}
        answers[name] = hostile.ask("job.usage", {**data, field: value})["data"]

    # then: every one is bad_field naming its field, never internal_error; nothing stored
    assert {name: answer["code"] for name, answer in answers.items()} == dict.fromkeys(
        OUT_OF_RANGE, "bad_field"
    )
    for name, (field, _) in OUT_OF_RANGE.items():
        assert field in answers[name]["message"], answers[name]
    assert attempt_of(job_id).usage_seq == seq_before
    # each one a refused report of this host (the next test says what else flags)
    assert Host.objects.get(pk=hostile.host_id).flagged_reports == len(OUT_OF_RANGE)
    # the socket is kept: the next good report is acknowledged and billed
    assert hostile.usage(job_id, 1, cpu=0.5, wall=0.5)["type"] == "usage.ack"
    post()
    bill = cost(500, 500)
    assert charged(Job.objects.get(pk=job_id)) == bill
    # (and daphne_live checks that it logged no traceback)
    assert money(hana, alice) == running_money(bill)
    assert_reconciled()


def test_more_than_twenty_invalid_messages_close_the_socket_with_4400(
    hostile, alice, hana, client_for
):
    # given: a running job
    job_id = submit(client_for(alice), hostile.host_id)
    hostile.run(job_id)
    # when: 21 reports with a seq out of range
    for _ in range(21):
        hostile.send(
            "job.usage",
            {
                **ref(job_id),
                "seq": 2**64,
                "cpu_seconds": 0.0,
                "wall_seconds": 0.0,
                "memory_peak_mb": 0,
                "memory_current_mb": 0,
                "gpu_seconds": 0.0,
            },
        )
    # then: the first twenty answered bad_field, then the protocol's close
    code = hostile.closed_code()
    errors = [m["data"]["code"] for m in hostile.inbox if m["type"] == "error"]
    assert (errors, code) == (["bad_field"] * 20, 4400)
    assert charged(Job.objects.get(pk=job_id)) == 0
    assert money(hana, alice) == running_money(0)
    assert_reconciled()


def test_an_out_of_range_number_in_a_report_flags_the_host_and_nothing_moves(
    hostile, alice, hana, client_for, settings
):
    # given: a running job
    job_id = submit(client_for(alice), hostile.host_id)
    hostile.run(job_id)
    seq_before = attempt_of(job_id).usage_seq
    usage = {**ref(job_id), "seq": 1, "cpu_seconds": 0.5, "wall_seconds": 0.5}
    usage |= {"memory_peak_mb": 64, "memory_current_mb": 32, "gpu_seconds": 0.0}

    # when: a job.usage with cpu 1e300
    answer = hostile.ask("job.usage", {**usage, "cpu_seconds": 1e300})

    # then: refused at decode, and counted as a refused report of this host
    assert answer["data"]["code"] == "bad_field"
    host = Host.objects.get(pk=hostile.host_id)
    assert (host.flagged_reports, host.last_flag_reason) == (
        1,
        "bad_field: data.cpu_seconds must be between 0 and 1e+09",
    )

    # when: the other reports of the attempt with a number out of range
    finished = finished_data(job_id, 2, cpu=0.5, wall=0.5)
    finished["usage"]["seq"] = 2**63
    reports = [
        ("job.finished", finished),
        ("job.log", {**ref(job_id), "offset": -1, "data": "x"}),
        ("job.started", {**ref(job_id), "phase": "finished"}),
    ]
    answers = [hostile.ask(kind, data)["data"]["code"] for kind, data in reports]

    # then: each one flags; the quarantine comes at HOST_QUARANTINE_FLAGS as for any refusal
    assert answers == ["bad_field"] * 3
    host = Host.objects.get(pk=hostile.host_id)
    assert host.flagged_reports == 4
    assert host.quarantined_at is not None
    assert host.quarantine_reason.startswith(
        f"{settings.HOST_QUARANTINE_FLAGS} or more flagged reports"
    ), host.quarantine_reason

    # when: frames that name no attempt of this host: a job id out of range, a job that does
    # not exist, another attempt number, and messages that are no report
    not_reports = [
        ("job.usage", {**usage, "job_id": 2**64, "cpu_seconds": 1e300}),
        ("job.usage", {**usage, "job_id": job_id + 1000, "cpu_seconds": 1e300}),
        ("job.usage", {**usage, "attempt": 2, "cpu_seconds": 1e300}),
        ("job.accept", {**ref(job_id), "attempt": 2**64}),
        ("job.reject", {**ref(job_id), "reason": "no", "code": "maybe"}),
    ]
    answers = [hostile.ask(kind, data)["data"]["code"] for kind, data in not_reports]

    # then: refused the same way, and not flagged (docs/protocol.md, "Bounds")
    assert answers == ["bad_field"] * 5
    assert Host.objects.get(pk=hostile.host_id).flagged_reports == 4

    # and nothing else moved: no report stored, nothing charged, the attempt still running
    attempt = attempt_of(job_id)
    assert (attempt.status, attempt.usage_seq) == ("running", seq_before)
    post()
    assert charged(Job.objects.get(pk=job_id)) == 0
    assert money(hana, alice) == running_money(0)
    assert_reconciled()


# --- after the end -----------------------------------------------------------------------------


def test_after_the_end_undeclared_uploads_and_late_log_lines_are_refused(
    hostile, alice, hana, client_for, settings
):
    # given: a job that ran 1 s; before finishing the host uploads a file it won't declare
    renter = client_for(alice)
    job_id = submit(renter, hostile.host_id)
    hostile.run(job_id)
    time.sleep(1.0)
    assert hostile.upload(job_id, 1, "sneaky.txt", b"not declared").status_code == 204
    assert hostile.upload(job_id, 1, "answer.txt", b"42").status_code == 204
    declared = {"name": "answer.txt", "size": 2, "sha256": hashlib.sha256(b"42").hexdigest()}
    finished = hostile.ask(
        "job.finished", finished_data(job_id, 1, cpu=0.8, wall=1.0, outputs=[declared])
    )
    assert finished["type"] == "ack", finished

    # then: the renter sees only what was declared
    names = [o["name"] for o in renter.get(f"/api/v1/jobs/{job_id}/outputs/").json()["results"]]
    assert names == ["answer.txt"]

    # when: after job.finished it uploads another undeclared file and appends log lines
    undeclared = hostile.upload(job_id, 1, "later.txt", b"more")
    in_window = hostile.ask("job.log", {**ref(job_id), "offset": 0, "data": "tail\n"})
    time.sleep(settings.JOB_LATE_UPLOAD_SECONDS + 0.5)
    late_log = hostile.ask("job.log", {**ref(job_id), "offset": 5, "data": "injected\n"})
    late_upload = hostile.upload(job_id, 1, "answer.txt", b"42")

    # then: the undeclared upload is refused; the log takes its tail inside the window only
    assert (undeclared.status_code, undeclared.json()["error"]["code"]) == (
        400,
        "undeclared_output",
    )
    assert (in_window["type"], in_window["data"]["offset"]) == ("log.ack", 5)
    assert (late_log["type"], late_log["data"]["code"]) == ("error", "upload_window_closed")
    assert (late_upload.status_code, late_upload.json()["error"]["code"]) == (
        409,
        "upload_window_closed",
    )
    names = [o["name"] for o in renter.get(f"/api/v1/jobs/{job_id}/outputs/").json()["results"]]
    assert names == ["answer.txt"]
    assert JobOutput.objects.filter(job_id=job_id).count() == 1
    assert renter.get(f"/api/v1/jobs/{job_id}/logs/", {"offset": 0}).json()["data"] == "tail\n"

    # and the money: billed from the final counters; the earnings mature a window after the
    # settlement, and only then can they be paid out
    attempt = attempt_of(job_id)
    assert attempt.started_at is not None
    assert attempt.finished_at is not None
    bill = billed_for(800, 1_000, ms(attempt.started_at, attempt.finished_at) + 1000)
    assert bill == cost(800, 1_000)
    job = Job.objects.get(pk=job_id)
    assert (job.status, charged(job)) == ("succeeded", bill)
    assert job.hold_released_at is not None
    earned = bill - fee_of(bill)
    assert earnings_mature() == 1  # the 1 s window has passed since the settlement
    cents = earned // 10_000 * 10_000
    paid = payout(client_for(hana), cents)
    assert paid.status_code == 201, paid.json()
    assert money(hana, alice) == {
        "wallet": FUNDS - bill,
        "pending": 0,
        "available": earned - cents,
        "in_payouts": 0,  # the demo provider transferred it at once
        "platform_loss": 0,
    }
    summary = client_for(hana).get("/api/v1/earnings/").json()
    assert (summary["paid_micros"], summary["available_micros"]) == (cents, earned - cents)
    assert_reconciled()
