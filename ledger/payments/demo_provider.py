"""The demo provider: the embedded default. Purchases are paid at once, payouts succeed at once.

It hands out credits for nothing, so it refuses to load unless ``DEBUG`` is on or
``DEMO_PAYMENTS_ENABLED`` says so explicitly (a demo deployment, the test suite).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ledger.payments.providers import (
    Checkout,
    CheckoutRequest,
    ConnectedAccountState,
    Transfer,
    demo_payments_allowed,
)


class DemoProvider:
    name = "demo"

    def __init__(self) -> None:
        if not demo_payments_allowed():
            raise ImproperlyConfigured(
                "The demo payment provider gives credits away: it only loads with DEBUG on or "
                "DEMO_PAYMENTS_ENABLED=1. Set PAYMENT_PROVIDER=stripe for a real deployment."
            )

    def checkout_create(self, request: CheckoutRequest) -> Checkout:
        return self.checkout_fetch(f"demo_pay_{request.payment_id}")

    def checkout_fetch(self, provider_payment_id: str) -> Checkout:
        return Checkout(
            provider=self.name,
            provider_payment_id=provider_payment_id,
            client_secret=None,
            publishable_key=None,
            is_paid=True,
        )

    def connected_account_create(
        self, *, user_id: int, email: str, idempotency_key: str
    ) -> ConnectedAccountState:
        return ConnectedAccountState(f"demo_acct_{user_id}", "complete")

    def connected_account_fetch(self, account_id: str) -> ConnectedAccountState:
        return ConnectedAccountState(account_id, "complete")

    def onboarding_link_create(self, *, account_id: str, idempotency_key: str) -> str:
        return f"{settings.PUBLIC_URL}/payouts?onboarding=return"

    def transfer_create(
        self, *, account_id: str, amount_micros: int, payout_id: int, idempotency_key: str
    ) -> Transfer:
        return Transfer(f"demo_tr_{payout_id}")
