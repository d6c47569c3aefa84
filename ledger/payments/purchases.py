"""Buying credits: the purchase request and the Stripe events about payments.

The money itself moves in ``ledger.payments.money`` (through the ledger's one posting writer);
this module talks to the provider and decides which money move an event calls. The money moves
join the transaction of the entry point: a webhook delivery runs each money event's handler as
one ``durable`` transaction (``ledger.payments.webhooks``); ``payment_create`` calls the provider
outside any transaction and credits a demo payment in a ``durable_call`` of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError

from accounts.models import Organisation, User
from config.errors import ServiceError, Unprocessable, ValidationFailed
from config.transactions import durable_call
from ledger.payments.gateways import payment_provider
from ledger.payments.models import Payment, PaymentStatus, StripeEventOutcome
from ledger.payments.money import payment_credit, payment_dispute_lose, payment_refund_sync
from ledger.payments.providers import (
    CURRENCY,
    Checkout,
    CheckoutRequest,
    ProviderError,
    amount_integer_validate,
    amount_whole_cents_validate,
    micros_from_cents,
)

logger = logging.getLogger(__name__)


class ProviderUnavailable(ServiceError):
    """The payment provider refused or could not be reached; the request may be retried."""

    status_code = 502
    default_code = "payment_provider_error"


@dataclass(frozen=True)
class PaymentCheckout:
    payment: Payment
    checkout: Checkout


def purchase_amount_validate(amount_micros: object) -> int:
    """A purchase between the configured bounds, in whole cents (Stripe's unit)."""
    low, high = settings.PURCHASE_MIN_MICROS, settings.PURCHASE_MAX_MICROS
    amount = amount_integer_validate(amount_micros)
    if not low <= amount <= high:
        raise ValidationFailed(
            f"amount_micros must be between {low} and {high}",
            code="amount_out_of_range",
            fields={"amount_micros": ["outside the range one purchase may have"]},
        )
    return amount_whole_cents_validate(amount)


def _payment_for_key(
    *, user: User, amount_micros: int, idempotency_key: str, organisation: Organisation | None
) -> Payment:
    """The payment named by the client's key: created once, the same one on every repeat."""
    provider = settings.PAYMENT_PROVIDER
    if not idempotency_key:
        return Payment.objects.create(
            user=user, organisation=organisation, amount_micros=amount_micros, provider=provider
        )
    try:
        payment, _ = Payment.objects.get_or_create(
            user=user,
            idempotency_key=idempotency_key,
            defaults={
                "amount_micros": amount_micros,
                "provider": provider,
                "organisation": organisation,
            },
        )
    except IntegrityError:
        payment = Payment.objects.get(user=user, idempotency_key=idempotency_key)
    if payment.amount_micros != amount_micros:
        raise Unprocessable(
            "this Idempotency-Key was used for a purchase of another amount",
            code="idempotency_key_reused",
            fields={"amount_micros": ["differs from the first request with this key"]},
        )
    if payment.organisation_id != (organisation.pk if organisation is not None else None):
        raise Unprocessable(
            "this Idempotency-Key was used for a purchase for another wallet",
            code="idempotency_key_reused",
            fields={"amount_micros": ["the first request with this key funded another wallet"]},
        )
    return payment


def payment_create(
    *,
    user: User,
    amount_micros: int,
    idempotency_key: str = "",
    organisation: Organisation | None = None,
) -> PaymentCheckout:
    """Start a purchase of credits and return what the web page needs to pay.

    Stripe: creates a PaymentIntent (Stripe idempotency key ``payment:<pk>``); the credits
    arrive with the verified ``payment_intent.succeeded`` webhook, never here. Demo: paid and
    credited at once. With ``organisation`` the credits fund that organisation's wallet (the
    caller checked that ``user`` is one of its admins). A repeat with the same
    ``idempotency_key`` returns the same payment; the same key with another amount or wallet
    raises ``Unprocessable`` (422). No transaction is held open across the provider call.
    """
    amount = purchase_amount_validate(amount_micros)
    provider = payment_provider()
    payment = _payment_for_key(
        user=user,
        amount_micros=amount,
        idempotency_key=idempotency_key,
        organisation=organisation,
    )
    try:
        if payment.provider_payment_id:
            checkout = provider.checkout_fetch(payment.provider_payment_id)
        else:
            checkout = provider.checkout_create(
                CheckoutRequest(
                    payment_id=payment.pk,
                    user_id=user.pk,
                    amount_micros=amount,
                    idempotency_key=payment.provider_idempotency_key,
                )
            )
    except ProviderError as exc:
        if not idempotency_key:
            # Nobody can come back for this payment; with a key, a retry reuses it (and its
            # Stripe idempotency key, in case Stripe did create the intent).
            Payment.objects.filter(pk=payment.pk, provider_payment_id="").update(
                status=PaymentStatus.FAILED
            )
        raise ProviderUnavailable(f"the payment provider failed: {exc.message}") from exc
    if not payment.provider_payment_id:
        Payment.objects.filter(pk=payment.pk, provider_payment_id="").update(
            provider_payment_id=checkout.provider_payment_id
        )
    if checkout.is_paid:
        durable_call(payment_credit, payment_id=payment.pk)
    payment.refresh_from_db()
    return PaymentCheckout(payment, checkout)


# --- Stripe events ----------------------------------------------------------------------------


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _cents(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _payment_of_intent(intent_id: str, metadata: object = None) -> Payment | None:
    """Our payment behind a PaymentIntent, by its id or (if the id was never saved, say the
    process died right after creating it) by the payment id we put in its metadata."""
    if not intent_id:
        return None
    payment = Payment.objects.filter(provider="stripe", provider_payment_id=intent_id).first()
    if payment is not None or not isinstance(metadata, dict):
        return payment
    payment_id = str(metadata.get("payment_id", ""))
    if not payment_id.isdigit():
        return None
    Payment.objects.filter(pk=int(payment_id), provider="stripe", provider_payment_id="").update(
        provider_payment_id=intent_id
    )
    return Payment.objects.filter(provider="stripe", provider_payment_id=intent_id).first()


def stripe_payment_succeeded(intent: Mapping[str, Any]) -> StripeEventOutcome:
    """``payment_intent.succeeded``: credit the wallet, once, with exactly what was paid."""
    payment = _payment_of_intent(_text(intent, "id"), intent.get("metadata"))
    if payment is None:
        logger.warning("payment_intent.succeeded for an unknown intent %s", intent.get("id"))
        return StripeEventOutcome.IGNORED
    cents = _cents(intent, "amount")
    if (
        cents is None
        or micros_from_cents(cents) != payment.amount_micros
        or _text(intent, "currency") != CURRENCY
    ):
        logger.error(
            "payment %s: intent %s paid %s %s, expected %s micro-credits; not credited",
            payment.pk,
            intent.get("id"),
            cents,
            intent.get("currency"),
            payment.amount_micros,
        )
        return StripeEventOutcome.IGNORED
    payment_credit(payment_id=payment.pk)
    return StripeEventOutcome.PROCESSED


def stripe_payment_failed(intent: Mapping[str, Any]) -> StripeEventOutcome:
    """``payment_intent.payment_failed``: a pending payment is marked failed. The intent can
    still succeed later (another card): the succeeded event then credits it as usual."""
    payment = _payment_of_intent(_text(intent, "id"), intent.get("metadata"))
    if payment is None:
        return StripeEventOutcome.IGNORED
    Payment.objects.filter(pk=payment.pk, status=PaymentStatus.PENDING).update(
        status=PaymentStatus.FAILED
    )
    return StripeEventOutcome.PROCESSED


def stripe_charge_refunded(charge: Mapping[str, Any]) -> StripeEventOutcome:
    """``charge.refunded``: take back what was refunded so far (Stripe's cumulative
    ``amount_refunded``), so repeated or reordered refund events take nothing twice."""
    payment = _payment_of_intent(_text(charge, "payment_intent"))
    refunded_cents = _cents(charge, "amount_refunded")
    if payment is None or refunded_cents is None:
        logger.warning("charge.refunded for an unknown charge %s", charge.get("id"))
        return StripeEventOutcome.IGNORED
    payment_refund_sync(payment_id=payment.pk, refunded_micros=micros_from_cents(refunded_cents))
    return StripeEventOutcome.PROCESSED


def stripe_dispute_closed(dispute: Mapping[str, Any]) -> StripeEventOutcome:
    """``charge.dispute.closed``: a lost dispute takes the disputed amount back, once per
    dispute; a won one changes nothing (the credits were never taken while it was open)."""
    if _text(dispute, "status") != "lost":
        return StripeEventOutcome.PROCESSED
    payment = _payment_of_intent(_text(dispute, "payment_intent"))
    cents = _cents(dispute, "amount")
    if payment is None or cents is None:
        logger.warning("charge.dispute.closed for an unknown payment: %s", dispute.get("id"))
        return StripeEventOutcome.IGNORED
    payment_dispute_lose(
        payment_id=payment.pk,
        dispute_id=_text(dispute, "id"),
        amount_micros=micros_from_cents(cents),
    )
    return StripeEventOutcome.PROCESSED
