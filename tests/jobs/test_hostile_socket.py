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
from tests.live import Closed, LiveServer, WireAgent

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

FUNDS = 50_000_000
CAP = 5_000_000
CPUS = 2
# 36 credits per core-hour of CPU and per GB-hour: 10 µcr per CPU-ms, 5 µcr per wall-ms of 512 MB.
RATES = {
    "cpu_core_hour_micros": 36_000_000,
    "memory_gb_hour_micros": 36_000_000,
    "gpu_hour_micros": 0,
}


def cost(cpu_ms: int, wall_ms: int) -> int:
    """What counters cost at RATES (exact: no rounding at these rates)."""
    return 10 * cpu_ms + 5 * wall_ms


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _jobs_known_to_the_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    """Maturity and reconciliation read the jobs app's facts, as in production."""
    monkeypatch.setattr(providers, "job_facts", job_facts)


@pytest.fixture
def funded(alice: User, hana: User) -> None:
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
        provider="stripe",
        stripe_account_id="acct_hostile",
        onboarding_status=OnboardingStatus.COMPLETE,
    )


@pytest.fixture
def hostile(
    daphne_live: LiveServer, hana: User, client_for: Callable[[User], Any], funded: None
) -> Iterator[WireAgent]:
    """hana's host, enrolled for real, online with the metering rates; its agent is the test."""
    agent = WireAgent.enroll(daphne_live, client_for(hana))
    Host.objects.filter(pk=agent.host_id).update(**RATES)
    agent.connect()
    yield agent
    agent.close()


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


@pytest.mark.parametrize("renter_is_owner", [False, True], ids=["other_renter", "own_job"])
def test_payout_then_lose_the_attempt_pays_nothing_out(
    hostile, alice, hana, client_for, renter_is_owner
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

    # and when: the agent reconnects without the job, the last attempt it may have
    Job.objects.filter(pk=job_id).update(max_attempts=1)
    welcome = hostile.connect(running_jobs=[])
    assert (welcome["kill_jobs"], welcome["keep_jobs"]) == ([], [])
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
