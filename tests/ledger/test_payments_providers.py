"""The provider layer over real HTTP: localstripe for PaymentIntents, the fake Connect server
for accounts, links and transfers. The demo provider's refusal to load in production."""

from __future__ import annotations

import pytest
import stripe
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings

from ledger.payments.checks import payment_provider_check
from ledger.payments.demo_provider import DemoProvider
from ledger.payments.gateways import payment_provider
from ledger.payments.providers import (
    Checkout,
    CheckoutRequest,
    ConnectedAccountState,
    ProviderError,
    Transfer,
    cents_from_micros,
)
from ledger.payments.stripe_provider import StripeProvider
from tests.ledger.stripe_fakes import FakeConnect, Localstripe, PlannedFailure


def test_cents_from_micros_refuses_fractions_of_a_cent() -> None:
    # given / when / then
    assert cents_from_micros(12_340_000) == 1234
    with pytest.raises(ValueError, match="whole number of cents"):
        cents_from_micros(12_345)


def test_stripe_checkout_creates_a_payment_intent_in_cents(stripe_payments: Localstripe) -> None:
    # given
    provider = payment_provider()
    request = CheckoutRequest(
        payment_id=7, user_id=3, amount_micros=25_000_000, idempotency_key="payment:7"
    )

    # when
    checkout = provider.checkout_create(request)

    # then
    assert isinstance(provider, StripeProvider)
    assert checkout.provider == "stripe"
    assert checkout.is_paid is False
    assert checkout.publishable_key == "pk_test_communipute"
    assert checkout.client_secret is not None
    assert checkout.client_secret.startswith(f"{checkout.provider_payment_id}_secret_")
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": stripe_payments.url})
    intent = client.v1.payment_intents.retrieve(checkout.provider_payment_id)
    assert (intent.amount, intent.currency, intent.status) == (
        2500,
        "usd",
        "requires_payment_method",
    )
    assert intent.metadata.to_dict() == {"payment_id": "7", "user_id": "3"}
    assert provider.checkout_fetch(checkout.provider_payment_id) == checkout


def test_stripe_connect_calls_carry_idempotency_keys(stripe_connect: FakeConnect) -> None:
    # given
    provider = payment_provider()

    # when
    state = provider.connected_account_create(
        user_id=4, email="hana@example.com", idempotency_key="connected-account:4"
    )
    again = provider.connected_account_create(
        user_id=4, email="hana@example.com", idempotency_key="connected-account:4"
    )
    url = provider.onboarding_link_create(account_id=state.account_id, idempotency_key="link:1")
    stripe_connect.account_complete(state.account_id)
    refreshed = provider.connected_account_fetch(state.account_id)

    # then
    assert again == state == ConnectedAccountState(state.account_id, "pending")
    assert refreshed == ConnectedAccountState(state.account_id, "complete")
    assert url.startswith(f"https://connect.stripe.test/setup/e/{state.account_id}/")
    assert [r.idempotency_key for r in stripe_connect.requests_to("POST", "/v1/accounts")] == [
        "connected-account:4",
        "connected-account:4",
    ]
    links = stripe_connect.requests_to("POST", "/v1/account_links")
    assert [(r.idempotency_key, r.params["type"]) for r in links] == [
        ("link:1", "account_onboarding")
    ]
    assert len(stripe_connect.state.accounts) == 1


def test_stripe_transfer_failure_is_transient_then_the_retry_succeeds_with_the_same_key(
    stripe_connect: FakeConnect,
) -> None:
    # given
    provider = payment_provider()
    stripe_connect.transfers_fail(PlannedFailure(500, "api_error", "Stripe is having a moment"))

    # when
    with pytest.raises(ProviderError) as failure:
        provider.transfer_create(
            account_id="acct_x", amount_micros=12_500_000, payout_id=9, idempotency_key="payout:9"
        )
    transfer = provider.transfer_create(
        account_id="acct_x", amount_micros=12_500_000, payout_id=9, idempotency_key="payout:9"
    )

    # then
    assert failure.value.is_transient is True
    assert transfer == Transfer(next(iter(stripe_connect.state.transfers)))
    calls = stripe_connect.requests_to("POST", "/v1/transfers")
    assert [(c.idempotency_key, c.params["amount"], c.params["destination"]) for c in calls] == [
        ("payout:9", "1250", "acct_x"),
        ("payout:9", "1250", "acct_x"),
    ]


def test_stripe_transfer_refusal_is_permanent(stripe_connect: FakeConnect) -> None:
    # given
    provider = payment_provider()
    stripe_connect.transfers_fail(
        PlannedFailure(400, "invalid_request_error", "Insufficient funds in Stripe account")
    )

    # when
    with pytest.raises(ProviderError) as failure:
        provider.transfer_create(
            account_id="acct_x", amount_micros=10_000_000, payout_id=5, idempotency_key="payout:5"
        )

    # then
    assert failure.value.is_transient is False
    assert failure.value.message == "Insufficient funds in Stripe account"
    assert stripe_connect.state.transfers == {}


def test_demo_provider_refuses_to_load_with_debug_off(settings: Settings) -> None:
    # given
    settings.DEBUG = False
    settings.DEMO_PAYMENTS_ENABLED = False
    settings.PAYMENT_PROVIDER = "demo"

    # when / then
    with pytest.raises(ImproperlyConfigured, match="DEMO_PAYMENTS_ENABLED"):
        payment_provider()
    with pytest.raises(ImproperlyConfigured):
        DemoProvider()
    messages = payment_provider_check(app_configs=None, databases=None)
    assert [(m.id, type(m)) for m in messages] == [("payments.E001", Error)]


@pytest.mark.parametrize(("debug", "enabled"), [(True, False), (False, True)])
def test_demo_provider_loads_in_development_or_when_enabled(
    settings: Settings, debug: bool, enabled: bool
) -> None:
    # given
    settings.DEBUG = debug
    settings.DEMO_PAYMENTS_ENABLED = enabled
    settings.PAYMENT_PROVIDER = "demo"

    # when
    checkout = payment_provider().checkout_create(
        CheckoutRequest(payment_id=1, user_id=1, amount_micros=5_000_000, idempotency_key="k")
    )

    # then
    assert checkout == Checkout("demo", "demo_pay_1", None, None, is_paid=True)
    assert payment_provider_check(app_configs=None, databases=None) == []


def test_stripe_provider_without_keys_fails_the_check(settings: Settings) -> None:
    # given
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = None
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_x"
    settings.STRIPE_WEBHOOK_SECRET = None

    # when
    messages = payment_provider_check(app_configs=None, databases=None)

    # then
    assert [(m.id, m.msg) for m in messages] == [
        ("payments.E002", "PAYMENT_PROVIDER=stripe needs STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET")
    ]
    with pytest.raises(ImproperlyConfigured, match="STRIPE_SECRET_KEY"):
        payment_provider()
