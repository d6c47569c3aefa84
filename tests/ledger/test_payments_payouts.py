"""Payouts: Connect onboarding, the transfer task against the fake Connect server (real HTTP,
the real stripe library), failures and retries, and concurrent requests on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from accounts.models import User
from config.celery import app as celery_app
from config.transactions import durable_call
from ledger.models import AccountKind, LedgerTransaction
from ledger.payments.models import (
    ConnectedAccount,
    OnboardingStatus,
    Payment,
    Payout,
    PayoutStatus,
)
from ledger.payments.money import payment_credit, payment_dispute_lose, payout_request
from ledger.payments.tasks import payout_start, payouts_stalled_retry_task
from ledger.services import (
    earnings_mature,
    hold_capture,
    hold_place,
    ledger_reconcile,
    wallet_credit,
)
from tests.ledger.conftest import CONNECT_WEBHOOK_SECRET
from tests.ledger.payment_steps import balance, webhook_post
from tests.ledger.stripe_fakes import FakeConnect, PlannedFailure, stripe_event

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def celery_retries_run_eagerly() -> Iterator[None]:
    propagates = celery_app.conf.task_eager_propagates
    celery_app.conf.task_eager_propagates = False
    yield
    celery_app.conf.task_eager_propagates = propagates


def _earn(owner: User, renter: User, amount_micros: int) -> None:
    """``owner`` earns ``amount_micros`` from a job of ``renter`` and it matures."""
    durable_call(
        wallet_credit,
        user=renter,
        amount_micros=amount_micros,
        key=f"buy:{owner.pk}",
        reason="test",
    )
    durable_call(
        hold_place,
        user=renter,
        job_id=owner.pk,
        amount_micros=amount_micros,
        key=f"hold:{owner.pk}",
    )
    durable_call(
        hold_capture,
        job_id=owner.pk,
        attempt=1,
        host_owner=owner,
        gross_micros=amount_micros,
        fee_micros=0,
        key=f"capture:{owner.pk}",
    )
    later = timezone.now() + timedelta(days=30)
    earnings_mature(now=later)


def _onboarded(owner: User, account_id: str = "acct_ready") -> ConnectedAccount:
    return ConnectedAccount.objects.create(
        user=owner,
        provider="stripe",
        stripe_account_id=account_id,
        onboarding_status=OnboardingStatus.COMPLETE,
    )


def test_onboarding_gives_a_link_until_stripe_reports_the_account_ready(
    hana: User,
    stripe_connect: FakeConnect,
    live_server: Any,
    client_for: Callable[[User], APIClient],
) -> None:
    # given
    api = client_for(hana)

    # when
    first = api.post("/api/v1/payouts/onboarding/")
    second = api.post("/api/v1/payouts/onboarding/")
    account_id = first.json()["account_id"]
    stale = stripe_event(
        "account.updated", dict(stripe_connect.state.accounts[account_id]), account=account_id
    )
    update = stripe_event(
        "account.updated", stripe_connect.account_complete(account_id), account=account_id
    )
    delivered = webhook_post(live_server.url, update, CONNECT_WEBHOOK_SECRET)
    late = webhook_post(live_server.url, stale, CONNECT_WEBHOOK_SECRET)
    done = api.post("/api/v1/payouts/onboarding/")

    # then
    assert [r.status_code for r in (first, second, delivered, late)] == [200] * 4
    assert first.json()["onboarding_status"] == "pending"
    assert first.json()["url"].startswith(f"https://connect.stripe.test/setup/e/{account_id}/")
    assert second.json()["url"] != first.json()["url"]
    assert done.json() == {"account_id": account_id, "onboarding_status": "complete", "url": None}
    creates = stripe_connect.requests_to("POST", "/v1/accounts")
    assert [c.idempotency_key for c in creates] == [f"connected-account:{hana.pk}"]
    assert creates[0].params["type"] == "express"
    assert ConnectedAccount.objects.get(user=hana).onboarding_status == OnboardingStatus.COMPLETE


def test_a_payout_is_transferred_with_its_idempotency_key(
    hana: User,
    alice: User,
    stripe_connect: FakeConnect,
    transactional_db: None,
    client_for: Callable[[User], APIClient],
) -> None:
    # given
    _earn(hana, alice, 30_000_000)
    _onboarded(hana)

    # when
    response = client_for(hana).post(
        "/api/v1/payouts/", {"amount_micros": 25_000_000}, format="json"
    )

    # then
    body = response.json()
    assert response.status_code == 201
    payout = Payout.objects.get()
    assert (body["id"], body["status"]) == (payout.pk, "paid")
    transfers = stripe_connect.requests_to("POST", "/v1/transfers")
    assert [
        (t.idempotency_key, t.params["amount"], t.params["destination"]) for t in transfers
    ] == [(f"payout:{payout.pk}", "2500", "acct_ready")]
    assert body["stripe_transfer_id"] == next(iter(stripe_connect.state.transfers))
    assert balance(AccountKind.EARNINGS_AVAILABLE, hana) == 5_000_000
    assert balance(AccountKind.PAYOUTS_CLEARING) == 0
    assert balance(AccountKind.STRIPE_CLEARING) == -30_000_000 + 25_000_000


def test_a_transfer_that_fails_is_retried_with_the_same_key(
    hana: User,
    alice: User,
    stripe_connect: FakeConnect,
    transactional_db: None,
    celery_retries_run_eagerly: None,
) -> None:
    # given: Stripe fails the first two attempts on its side. (Eager Celery re-runs a retried
    # task at once, but only when it doesn't propagate the task's exceptions.)
    _earn(hana, alice, 20_000_000)
    _onboarded(hana)
    stripe_connect.transfers_fail(
        PlannedFailure(500, "api_error", "Stripe is having a moment"),
        PlannedFailure(503, "api_error", "Still having it"),
    )

    # when: the request queues the task on commit; Celery retries it (eagerly in tests)
    payout = payout_start(owner=hana, amount_micros=20_000_000)

    # then
    payout.refresh_from_db()
    assert payout.status == PayoutStatus.PAID
    keys = [t.idempotency_key for t in stripe_connect.requests_to("POST", "/v1/transfers")]
    assert keys == [f"payout:{payout.pk}"] * 3
    assert len(stripe_connect.state.transfers) == 1
    assert balance(AccountKind.EARNINGS_AVAILABLE, hana) == 0
    assert LedgerTransaction.objects.filter(key=f"payout:{payout.pk}:paid").count() == 1
    assert ledger_reconcile().is_clean


def test_a_refused_transfer_gives_the_earnings_back(
    hana: User,
    alice: User,
    stripe_connect: FakeConnect,
    transactional_db: None,
    client_for: Callable[[User], APIClient],
) -> None:
    # given
    _earn(hana, alice, 15_000_000)
    _onboarded(hana)
    stripe_connect.transfers_fail(
        PlannedFailure(400, "invalid_request_error", "Insufficient funds in Stripe account")
    )

    # when
    response = client_for(hana).post(
        "/api/v1/payouts/", {"amount_micros": 15_000_000}, format="json"
    )
    history = client_for(hana).get("/api/v1/payouts/")

    # then
    assert response.status_code == 201
    assert response.json()["status"] == "failed"
    assert response.json()["failure_reason"] == "Insufficient funds in Stripe account"
    assert history.json()["count"] == 1
    assert balance(AccountKind.EARNINGS_AVAILABLE, hana) == 15_000_000
    assert balance(AccountKind.PAYOUTS_CLEARING) == 0
    assert stripe_connect.state.transfers == {}
    assert ledger_reconcile().is_clean


@pytest.mark.postgres
def test_concurrent_payout_requests_never_exceed_available_earnings(
    hana: User, alice: User, settings: Settings, transactional_db: None
) -> None:
    # given: 30 credits available, five requests of 10 at once
    settings.PAYMENT_PROVIDER = "demo"
    _earn(hana, alice, 30_000_000)
    ConnectedAccount.objects.create(
        user=hana, provider="demo", stripe_account_id="demo_acct", onboarding_status="complete"
    )
    barrier = threading.Barrier(5)
    outcomes: list[str] = []

    def request() -> None:
        try:
            barrier.wait()
            durable_call(payout_request, owner=hana, amount_micros=10_000_000)
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(getattr(exc, "code", repr(exc)))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=request) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert sorted(outcomes) == ["insufficient_earnings"] * 2 + ["ok"] * 3
    assert Payout.objects.count() == 3
    assert balance(AccountKind.EARNINGS_AVAILABLE, hana) == 0
    assert balance(AccountKind.PAYOUTS_CLEARING) == 30_000_000
    assert ledger_reconcile().is_clean


@pytest.mark.parametrize(
    ("amount", "status", "code"),
    [
        (9_990_000, 400, "payout_below_minimum"),
        (10_000_001, 400, "amount_not_whole_cents"),
        (40_000_000, 402, "insufficient_earnings"),
    ],
)
def test_a_payout_request_that_cannot_be_met_changes_nothing(
    hana: User,
    alice: User,
    stripe_connect: FakeConnect,
    client_for: Callable[[User], APIClient],
    amount: int,
    status: int,
    code: str,
) -> None:
    # given
    _earn(hana, alice, 30_000_000)
    _onboarded(hana)

    # when
    response = client_for(hana).post("/api/v1/payouts/", {"amount_micros": amount}, format="json")

    # then
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert Payout.objects.count() == 0
    assert balance(AccountKind.EARNINGS_AVAILABLE, hana) == 30_000_000
    assert stripe_connect.state.requests == []


def test_no_payout_without_a_ready_account_or_while_restricted(
    hana: User, alice: User, settings: Settings, client_for: Callable[[User], APIClient]
) -> None:
    # given: hana earned 20 but has not onboarded
    settings.PAYMENT_PROVIDER = "demo"
    _earn(hana, alice, 20_000_000)
    api = client_for(hana)

    # when
    not_ready = api.post("/api/v1/payouts/", {"amount_micros": 10_000_000}, format="json")
    _onboarded(hana)
    bought = Payment.objects.create(user=hana, amount_micros=10_000_000, provider="demo")
    durable_call(payment_credit, payment_id=bought.pk)
    durable_call(hold_place, user=hana, job_id=999, amount_micros=10_000_000, key="hold:999")
    durable_call(
        payment_dispute_lose, payment_id=bought.pk, dispute_id="dp_9", amount_micros=10_000_000
    )
    restricted = api.post("/api/v1/payouts/", {"amount_micros": 10_000_000}, format="json")

    # then
    assert (not_ready.status_code, not_ready.json()["error"]["code"]) == (
        409,
        "payout_account_not_ready",
    )
    assert (restricted.status_code, restricted.json()["error"]["code"]) == (
        403,
        "account_restricted",
    )
    assert Payout.objects.count() == 0
    assert balance(AccountKind.EARNINGS_AVAILABLE, hana) == 20_000_000


def test_a_repeated_payout_request_returns_the_same_payout(
    hana: User,
    alice: User,
    stripe_connect: FakeConnect,
    transactional_db: None,
    client_for: Callable[[User], APIClient],
) -> None:
    # given
    _earn(hana, alice, 30_000_000)
    _onboarded(hana)
    api = client_for(hana)
    key = {"Idempotency-Key": "payout-1"}

    # when
    first = api.post("/api/v1/payouts/", {"amount_micros": 10_000_000}, format="json", headers=key)
    again = api.post("/api/v1/payouts/", {"amount_micros": 10_000_000}, format="json", headers=key)
    other = api.post("/api/v1/payouts/", {"amount_micros": 20_000_000}, format="json", headers=key)

    # then
    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 422)
    assert again.json() == first.json()
    assert Payout.objects.count() == 1
    assert len(stripe_connect.requests_to("POST", "/v1/transfers")) == 1
    assert balance(AccountKind.EARNINGS_AVAILABLE, hana) == 20_000_000


def test_stalled_payouts_are_transferred_again(
    hana: User, alice: User, stripe_connect: FakeConnect, transactional_db: None
) -> None:
    # given: a payout whose transfer never ran (its queue message was lost)
    _earn(hana, alice, 10_000_000)
    _onboarded(hana)
    payout = durable_call(payout_request, owner=hana, amount_micros=10_000_000)
    Payout.objects.filter(pk=payout.pk).update(created_at=timezone.now() - timedelta(days=1))

    # when
    queued = payouts_stalled_retry_task.delay().get()

    # then
    assert queued == 1
    payout.refresh_from_db()
    assert payout.status == PayoutStatus.PAID


def test_demo_payouts_are_onboarded_and_paid_at_once(
    hana: User,
    alice: User,
    settings: Settings,
    transactional_db: None,
    client_for: Callable[[User], APIClient],
) -> None:
    # given
    settings.PAYMENT_PROVIDER = "demo"
    _earn(hana, alice, 12_000_000)
    api = client_for(hana)

    # when
    onboarding = api.post("/api/v1/payouts/onboarding/")
    payout = api.post("/api/v1/payouts/", {"amount_micros": 12_000_000}, format="json")

    # then
    assert onboarding.json() == {
        "account_id": f"demo_acct_{hana.pk}",
        "onboarding_status": "complete",
        "url": None,
    }
    body = payout.json()
    assert (payout.status_code, body["status"]) == (201, "paid")
    assert body["stripe_transfer_id"] == f"demo_tr_{body['id']}"
    assert balance(AccountKind.EARNINGS_AVAILABLE, hana) == 0
    assert ledger_reconcile().is_clean
