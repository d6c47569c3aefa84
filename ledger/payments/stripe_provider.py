"""The Stripe provider: PaymentIntents for purchases, Connect (Express) for payouts.

Every call that creates something carries a Stripe idempotency key that names its cause
(``payment:<pk>``, ``connected-account:<user>``, ``payout:<pk>``), so a retry of any kind
(the library's own network retries, a Celery retry, a repeated API request) creates nothing
twice. Reads (``retrieve``) are idempotent by nature and Stripe ignores keys on them.

``STRIPE_API_BASE`` points the client somewhere else than api.stripe.com: the tests use
localstripe and a small fake Connect server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import stripe
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from stripe._base_address import BaseAddresses

from ledger.payments.providers import (
    CURRENCY,
    Checkout,
    CheckoutRequest,
    ConnectedAccountState,
    ProviderError,
    Transfer,
    cents_from_micros,
)

T = TypeVar("T")

# Worth retrying with the same idempotency key: the request may not have been seen, or
# Stripe failed on its side. Authentication errors are ours to fix (a rotated key): retrying
# later is right, giving the money back at once would be wrong.
_TRANSIENT_ERRORS: tuple[type[stripe.StripeError], ...] = (
    stripe.APIConnectionError,
    stripe.APIError,
    stripe.RateLimitError,
    stripe.AuthenticationError,
)


def stripe_client() -> stripe.StripeClient:
    """A client built from settings (no global ``stripe.api_key`` state)."""
    if not settings.STRIPE_SECRET_KEY:
        raise ImproperlyConfigured("PAYMENT_PROVIDER=stripe needs STRIPE_SECRET_KEY")
    base_addresses: BaseAddresses = {}
    if settings.STRIPE_API_BASE:
        base_addresses = {"api": settings.STRIPE_API_BASE}
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses=base_addresses,
        max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
    )


def _stripe_call(call: Callable[[], T]) -> T:
    """Run one Stripe call, turning its errors into ProviderError (transient or not)."""
    try:
        return call()
    except _TRANSIENT_ERRORS as exc:
        raise ProviderError(str(exc.user_message or exc), is_transient=True) from exc
    except stripe.StripeError as exc:
        raise ProviderError(
            str(exc.user_message or exc), is_transient=False, code=exc.code or "provider_error"
        ) from exc


def _account_state(account: stripe.Account) -> ConnectedAccountState:
    transfers = account.capabilities.transfers if account.capabilities else None
    is_complete = bool(account.details_submitted) and transfers == "active"
    return ConnectedAccountState(account.id, "complete" if is_complete else "pending")


class StripeProvider:
    name = "stripe"

    def __init__(self) -> None:
        self.client = stripe_client()

    def _checkout(self, intent: stripe.PaymentIntent) -> Checkout:
        return Checkout(
            provider=self.name,
            provider_payment_id=intent.id,
            client_secret=intent.client_secret,
            publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
            is_paid=False,
        )

    def checkout_create(self, request: CheckoutRequest) -> Checkout:
        intent = _stripe_call(
            lambda: self.client.v1.payment_intents.create(
                {
                    "amount": cents_from_micros(request.amount_micros),
                    "currency": CURRENCY,
                    "metadata": {
                        "payment_id": str(request.payment_id),
                        "user_id": str(request.user_id),
                    },
                },
                {"idempotency_key": request.idempotency_key},
            )
        )
        return self._checkout(intent)

    def checkout_fetch(self, provider_payment_id: str) -> Checkout:
        intent = _stripe_call(lambda: self.client.v1.payment_intents.retrieve(provider_payment_id))
        return self._checkout(intent)

    def connected_account_create(
        self, *, user_id: int, email: str, idempotency_key: str
    ) -> ConnectedAccountState:
        account = _stripe_call(
            lambda: self.client.v1.accounts.create(
                {
                    "type": "express",
                    "email": email,
                    "capabilities": {"transfers": {"requested": True}},
                    "metadata": {"user_id": str(user_id)},
                },
                {"idempotency_key": idempotency_key},
            )
        )
        return _account_state(account)

    def connected_account_fetch(self, account_id: str) -> ConnectedAccountState:
        return _account_state(_stripe_call(lambda: self.client.v1.accounts.retrieve(account_id)))

    def onboarding_link_create(self, *, account_id: str, idempotency_key: str) -> str:
        link = _stripe_call(
            lambda: self.client.v1.account_links.create(
                {
                    "account": account_id,
                    "type": "account_onboarding",
                    "refresh_url": f"{settings.PUBLIC_URL}/payouts?onboarding=refresh",
                    "return_url": f"{settings.PUBLIC_URL}/payouts?onboarding=return",
                },
                {"idempotency_key": idempotency_key},
            )
        )
        return link.url

    def transfer_create(
        self, *, account_id: str, amount_micros: int, payout_id: int, idempotency_key: str
    ) -> Transfer:
        transfer = _stripe_call(
            lambda: self.client.v1.transfers.create(
                {
                    "amount": cents_from_micros(amount_micros),
                    "currency": CURRENCY,
                    "destination": account_id,
                    "transfer_group": f"payout:{payout_id}",
                    "metadata": {"payout_id": str(payout_id)},
                },
                {"idempotency_key": idempotency_key},
            )
        )
        return Transfer(transfer.id)
