"""The payment-provider interface (the chooser: ``ledger.payments.gateways``).

Two implementations: ``stripe_provider.StripeProvider`` (production) and
``demo_provider.DemoProvider`` (the embedded default: credits at once, pays out at once).
Callers never import either directly; they call ``ledger.payments.gateways.payment_provider()``.

Money crosses this boundary as micro-credits; a provider converts to its own unit (Stripe:
US cents, 1 credit = 1 USD = 100 cents = 1,000,000 micro-credits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from django.conf import settings

from config.errors import ValidationFailed

MICROS_PER_CENT = 10_000
CURRENCY = "usd"

OnboardingStatus = Literal["pending", "complete"]


def cents_from_micros(amount_micros: int) -> int:
    """Stripe's unit. Amounts that are not whole cents are refused before they get here."""
    if amount_micros % MICROS_PER_CENT:
        raise ValueError(f"{amount_micros} micro-credits is not a whole number of cents")
    return amount_micros // MICROS_PER_CENT


def micros_from_cents(amount_cents: int) -> int:
    return amount_cents * MICROS_PER_CENT


def amount_integer_validate(amount_micros: object) -> int:
    """An ``amount_micros`` from a client (a purchase, a payout) that is an integer."""
    if not isinstance(amount_micros, int) or isinstance(amount_micros, bool):
        raise ValidationFailed(
            "amount_micros must be an integer", fields={"amount_micros": ["invalid"]}
        )
    return amount_micros


def amount_whole_cents_validate(amount_micros: int) -> int:
    """Money that crosses to the provider is whole cents: refuse anything finer."""
    if amount_micros % MICROS_PER_CENT:
        raise ValidationFailed(
            f"amount_micros must be a whole number of cents (a multiple of {MICROS_PER_CENT})",
            code="amount_not_whole_cents",
            fields={"amount_micros": ["not a whole number of cents"]},
        )
    return amount_micros


class ProviderError(Exception):
    """The provider refused or could not be reached.

    ``is_transient`` says whether the same call (with the same idempotency key) may succeed
    later: network errors, rate limits and the provider's own 5xx are transient; a refusal of
    the request itself (bad account, insufficient platform balance) is not.
    """

    def __init__(self, message: str, *, is_transient: bool, code: str = "provider_error") -> None:
        super().__init__(message)
        self.message = message
        self.is_transient = is_transient
        self.code = code


@dataclass(frozen=True)
class CheckoutRequest:
    payment_id: int
    user_id: int
    amount_micros: int
    idempotency_key: str


@dataclass(frozen=True)
class Checkout:
    """What the web page needs to take the payment, and whether it is already paid.

    Stripe: ``client_secret`` + ``publishable_key`` for Stripe.js, ``is_paid`` False (credits
    arrive with the webhook). Demo: no secret, ``is_paid`` True (credited at once).
    """

    provider: str
    provider_payment_id: str
    client_secret: str | None
    publishable_key: str | None
    is_paid: bool


@dataclass(frozen=True)
class ConnectedAccountState:
    account_id: str
    onboarding_status: OnboardingStatus


@dataclass(frozen=True)
class Transfer:
    transfer_id: str


class PaymentProvider(Protocol):
    """Money in (checkouts) and money out (transfers to connected accounts).

    Every call that creates something carries an idempotency key, so a retried call (by the
    HTTP client, a Celery retry or a repeated API request) creates nothing twice.
    """

    name: str

    def checkout_create(self, request: CheckoutRequest) -> Checkout: ...

    def checkout_fetch(self, provider_payment_id: str) -> Checkout:
        """The checkout of an existing payment (for a repeated purchase request)."""
        ...

    def connected_account_create(
        self, *, user_id: int, email: str, idempotency_key: str
    ) -> ConnectedAccountState: ...

    def connected_account_fetch(self, account_id: str) -> ConnectedAccountState: ...

    def onboarding_link_create(self, *, account_id: str, idempotency_key: str) -> str:
        """A one-time URL where the owner completes onboarding."""
        ...

    def transfer_create(
        self, *, account_id: str, amount_micros: int, payout_id: int, idempotency_key: str
    ) -> Transfer: ...


def demo_payments_allowed() -> bool:
    """The demo provider hands out free credits: only in development or when asked for."""
    return bool(settings.DEBUG or settings.DEMO_PAYMENTS_ENABLED)
