"""The Stripe webhook as an adversary sees it: bodies that are not events, and events signed
with the Connect secret that are not the connected account's own."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from accounts.models import User
from ledger.models import AccountKind
from ledger.payments.models import ConnectedAccount, OnboardingStatus, Payment, StripeEvent
from tests.ledger.payment_steps import WEBHOOK_PATH, balance
from tests.ledger.stripe_fakes import event_sign, stripe_event

PLATFORM_SECRET = "whsec_edges_platform"
CONNECT_SECRET = "whsec_edges_connect"


@pytest.fixture(autouse=True)
def _secrets(settings: Settings) -> None:
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_edges"
    settings.STRIPE_WEBHOOK_SECRET = PLATFORM_SECRET
    settings.STRIPE_CONNECT_WEBHOOK_SECRET = CONNECT_SECRET


def _deliver(api: APIClient, payload: bytes, secret: str) -> Any:
    return api.post(
        WEBHOOK_PATH,
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=event_sign(payload, secret),
    )


def _error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"[]", b"3", b'"evt"', b"null", b"true", b"[{}]"])
def test_a_signed_body_that_is_not_an_object_is_400(api: APIClient, body: bytes) -> None:
    # when
    response = _deliver(api, body, PLATFORM_SECRET)

    # then
    assert _error(response) == (400, "invalid_payload")
    assert StripeEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_signed_body_that_is_not_utf8_is_400(api: APIClient) -> None:
    response = _deliver(api, b'{"id": "\xff"}', PLATFORM_SECRET)

    assert _error(response) == (400, "invalid_payload")
    assert StripeEvent.objects.count() == 0


def _intent(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.provider_payment_id,
        "object": "payment_intent",
        "amount": payment.amount_micros // 10_000,
        "currency": "usd",
        "status": "succeeded",
        "metadata": {"payment_id": str(payment.pk), "user_id": str(payment.user_id)},
    }


@pytest.mark.django_db
def test_the_connect_secret_cannot_sign_a_platform_event(api: APIClient, mallory: User) -> None:
    # given mallory holds the Connect secret (or a connected account's events) and forges a
    # purchase of hers as succeeded
    payment = Payment.objects.create(
        user=mallory, amount_micros=50_000_000, provider="stripe", provider_payment_id="pi_m"
    )
    event = stripe_event("payment_intent.succeeded", _intent(payment), account="acct_mallory")
    unscoped = stripe_event("payment_intent.succeeded", _intent(payment))

    # when
    scoped = _deliver(api, json.dumps(event).encode(), CONNECT_SECRET)
    plain = _deliver(api, json.dumps(unscoped).encode(), CONNECT_SECRET)

    # then nothing was credited and nothing was recorded
    assert _error(scoped) == (400, "invalid_event_source")
    assert _error(plain) == (400, "invalid_event_source")
    assert balance(AccountKind.WALLET, mallory) == 0
    payment.refresh_from_db()
    assert payment.credited_at is None
    assert StripeEvent.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("account", [None, "", "acct_mallory", 7])
def test_a_connect_event_must_name_the_account_it_is_about(
    api: APIClient, hana: User, account: Any
) -> None:
    # given hana's connected account, still pending
    ConnectedAccount.objects.create(user=hana, provider="stripe", stripe_account_id="acct_hana")
    event = stripe_event("account.updated", {"id": "acct_hana", "object": "account"})
    if account is not None:
        event["account"] = account

    # when
    response = _deliver(api, json.dumps(event).encode(), CONNECT_SECRET)

    # then
    assert _error(response) == (400, "invalid_event_source")
    assert StripeEvent.objects.count() == 0
    assert ConnectedAccount.objects.get().onboarding_status == OnboardingStatus.PENDING


@pytest.mark.django_db
def test_the_platform_secret_cannot_sign_a_connected_accounts_event(api: APIClient) -> None:
    event = stripe_event("account.updated", {"id": "acct_x", "object": "account"}, account="acct_x")

    response = _deliver(api, json.dumps(event).encode(), PLATFORM_SECRET)

    assert _error(response) == (400, "invalid_event_source")
    assert StripeEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_connect_event_about_its_own_account_is_accepted(api: APIClient) -> None:
    # given an account we don't know: accepted, recorded, ignored (no Stripe call needed)
    event = stripe_event(
        "account.updated", {"id": "acct_unknown", "object": "account"}, account="acct_unknown"
    )

    # when
    response = _deliver(api, json.dumps(event).encode(), CONNECT_SECRET)

    # then
    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "ignored"}
    assert StripeEvent.objects.count() == 1
