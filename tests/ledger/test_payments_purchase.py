"""Buying credits: Stripe over real HTTP (localstripe + a live server for its webhooks), the
demo provider, idempotency and validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from accounts.models import User
from ledger.models import AccountKind, LedgerTransaction
from ledger.payments.models import Payment, PaymentStatus, StripeEvent, StripeEventOutcome
from tests.ledger.conftest import WEBHOOK_SECRET, wait_for
from tests.ledger.payment_steps import (
    WEBHOOK_PATH,
    balance,
    card_pay,
    localstripe_client,
    webhook_post,
)
from tests.ledger.stripe_fakes import Localstripe, free_port

pytestmark = pytest.mark.timeout(60)


def test_stripe_purchase_is_credited_once_by_the_signed_webhook(
    alice: User,
    stripe_payments: Localstripe,
    live_server: Any,
    http_as: Callable[[User], requests.Session],
) -> None:
    # given
    stripe_payments.webhook_register(f"{live_server.url}{WEBHOOK_PATH}", WEBHOOK_SECRET)
    http = http_as(alice)

    # when
    created = http.post("/api/v1/payments/", json={"amount_micros": 25_000_000})
    body = created.json()
    before_webhook = balance(AccountKind.WALLET, alice)
    card_pay(stripe_payments, body["provider_payment_id"])
    wait_for(lambda: Payment.objects.get(pk=body["id"]).credited_at is not None)

    # then
    assert created.status_code == 201
    assert body["status"] == "pending"
    assert body["provider"] == "stripe"
    assert body["publishable_key"] == "pk_test_communipute"
    assert body["client_secret"].startswith(f"{body['provider_payment_id']}_secret_")
    assert before_webhook == 0
    assert balance(AccountKind.WALLET, alice) == 25_000_000
    assert balance(AccountKind.STRIPE_CLEARING) == -25_000_000
    payment = Payment.objects.get(pk=body["id"])
    assert payment.status == PaymentStatus.SUCCEEDED
    event = StripeEvent.objects.get()
    assert (event.type, event.outcome) == ("payment_intent.succeeded", StripeEventOutcome.PROCESSED)
    assert LedgerTransaction.objects.filter(key=f"purchase:{payment.pk}").count() == 1


def test_a_redelivered_succeeded_event_credits_nothing_more(
    alice: User,
    stripe_payments: Localstripe,
    live_server: Any,
    http_as: Callable[[User], requests.Session],
) -> None:
    # given: paid and credited through localstripe's own webhook
    stripe_payments.webhook_register(f"{live_server.url}{WEBHOOK_PATH}", WEBHOOK_SECRET)
    body = http_as(alice).post("/api/v1/payments/", json={"amount_micros": 5_000_000}).json()
    card_pay(stripe_payments, body["provider_payment_id"])
    wait_for(lambda: Payment.objects.get(pk=body["id"]).credited_at is not None)
    delivered = localstripe_client(stripe_payments).v1.events.list(
        {"type": "payment_intent.succeeded"}
    )
    event = next(e for e in delivered.data if e.data.object.id == body["provider_payment_id"])

    # when: Stripe delivers the same event again, twice
    replies = [webhook_post(live_server.url, event.to_dict(), WEBHOOK_SECRET) for _ in range(2)]

    # then
    assert [r.status_code for r in replies] == [200, 200]
    assert [r.json() for r in replies] == [{"received": True, "outcome": "processed"}] * 2
    assert balance(AccountKind.WALLET, alice) == 5_000_000
    assert StripeEvent.objects.count() == 1
    assert LedgerTransaction.objects.filter(key__startswith="purchase:").count() == 1


def test_a_repeated_purchase_request_returns_the_same_payment(
    alice: User, stripe_payments: Localstripe, client_for: Callable[[User], APIClient]
) -> None:
    # given
    api = client_for(alice)
    first = api.post(
        "/api/v1/payments/",
        {"amount_micros": 10_000_000},
        format="json",
        headers={"Idempotency-Key": "buy-10"},
    )

    # when
    again = api.post(
        "/api/v1/payments/",
        {"amount_micros": 10_000_000},
        format="json",
        headers={"Idempotency-Key": "buy-10"},
    )
    other = api.post(
        "/api/v1/payments/",
        {"amount_micros": 20_000_000},
        format="json",
        headers={"Idempotency-Key": "buy-10"},
    )

    # then
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert Payment.objects.count() == 1
    assert balance(AccountKind.WALLET, alice) == 0


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (999_999, "amount_out_of_range"),
        (1_000_000_010, "amount_out_of_range"),
        (1_234_567, "amount_not_whole_cents"),
        ("ten", "invalid"),
    ],
)
def test_a_purchase_outside_the_bounds_is_refused(
    alice: User, client_for: Callable[[User], APIClient], amount: object, code: str
) -> None:
    # given
    api = client_for(alice)

    # when
    response = api.post("/api/v1/payments/", {"amount_micros": amount}, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert Payment.objects.count() == 0
    assert balance(AccountKind.WALLET, alice) == 0


def test_demo_purchase_is_credited_at_once(
    alice: User, settings: Settings, client_for: Callable[[User], APIClient]
) -> None:
    # given
    settings.PAYMENT_PROVIDER = "demo"

    # when
    response = client_for(alice).post(
        "/api/v1/payments/", {"amount_micros": 3_000_000}, format="json"
    )

    # then
    body = response.json()
    assert response.status_code == 201
    assert (body["status"], body["provider"], body["client_secret"]) == ("succeeded", "demo", None)
    assert body["provider_payment_id"] == f"demo_pay_{body['id']}"
    assert balance(AccountKind.WALLET, alice) == 3_000_000


def test_payment_history_lists_only_the_users_own_payments(
    alice: User, mallory: User, settings: Settings, client_for: Callable[[User], APIClient]
) -> None:
    # given
    settings.PAYMENT_PROVIDER = "demo"
    for amount in (1_000_000, 2_000_000):
        client_for(alice).post("/api/v1/payments/", {"amount_micros": amount}, format="json")
    client_for(mallory).post("/api/v1/payments/", {"amount_micros": 7_000_000}, format="json")

    # when
    response = client_for(alice).get("/api/v1/payments/")

    # then
    body = response.json()
    assert response.status_code == 200
    assert body["count"] == 2
    assert [p["amount_micros"] for p in body["results"]] == [2_000_000, 1_000_000]


def test_the_webhook_needs_no_login_but_the_payments_api_does(api: APIClient) -> None:
    # given / when
    listing = api.get("/api/v1/payments/")

    # then
    assert listing.status_code == 401


def test_a_purchase_retried_after_stripe_was_unreachable_reuses_the_payment(
    alice: User,
    stripe_payments: Localstripe,
    settings: Settings,
    client_for: Callable[[User], APIClient],
) -> None:
    # given: Stripe can't be reached for the first attempt
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    api = client_for(alice)
    key = {"Idempotency-Key": "buy-when-down"}
    down = api.post("/api/v1/payments/", {"amount_micros": 4_000_000}, format="json", headers=key)
    pending_after_failure = Payment.objects.get().status

    # when
    settings.STRIPE_API_BASE = stripe_payments.url
    retried = api.post(
        "/api/v1/payments/", {"amount_micros": 4_000_000}, format="json", headers=key
    )

    # then
    assert down.status_code == 502
    assert down.json()["error"]["code"] == "payment_provider_error"
    assert pending_after_failure == PaymentStatus.PENDING
    assert retried.status_code == 201
    payment = Payment.objects.get()
    assert (retried.json()["id"], payment.status) == (payment.pk, PaymentStatus.PENDING)
    assert payment.provider_payment_id == retried.json()["provider_payment_id"]
    assert payment.provider_payment_id.startswith("pi_")


def test_a_purchase_without_a_key_is_marked_failed_when_stripe_is_unreachable(
    alice: User,
    stripe_payments: Localstripe,
    settings: Settings,
    client_for: Callable[[User], APIClient],
) -> None:
    # given
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"

    # when
    response = client_for(alice).post(
        "/api/v1/payments/", {"amount_micros": 4_000_000}, format="json"
    )

    # then
    assert response.status_code == 502
    assert Payment.objects.get().status == PaymentStatus.FAILED
    assert balance(AccountKind.WALLET, alice) == 0
