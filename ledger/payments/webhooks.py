"""Stripe webhooks: signature verification, exactly-once bookkeeping, and routing by type.

A delivery is verified with ``stripe.Webhook.construct_event`` (the signature over the raw body
and its timestamp, five minutes' tolerance) before anything is stored. A verified event is
recorded once by its unique id; its handler runs until it succeeds, and every handler is
idempotent by itself (ledger keys, conditional updates), so concurrent or repeated deliveries
and any order of arrival move money once. Unknown types are recorded as ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError
from django.utils import timezone

from config.errors import ServiceError
from config.transactions import durable
from ledger.payments.models import StripeEvent, StripeEventOutcome

logger = logging.getLogger(__name__)


class WebhookRejected(ServiceError):
    """A delivery that is not a genuine, well-formed Stripe event: 400, nothing stored."""

    status_code = 400
    default_code = "invalid_signature"


@dataclass(frozen=True)
class VerifiedEvent:
    event_id: str
    type: str
    livemode: bool
    data_object: Mapping[str, Any]
    payload: dict[str, Any]


# Events of connected accounts, which only the Connect endpoint (its own secret) receives; each
# names the connected account its object belongs to, which must be the event's ``account``.
CONNECT_EVENT_ACCOUNT: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "account.updated": lambda data_object: data_object.get("id"),
}


def _webhook_secrets() -> list[tuple[str, bool]]:
    """``(secret, is_connect)`` of each configured endpoint."""
    secrets = [
        (secret, is_connect)
        for secret, is_connect in (
            (settings.STRIPE_WEBHOOK_SECRET, False),
            (settings.STRIPE_CONNECT_WEBHOOK_SECRET, True),
        )
        if secret
    ]
    if not secrets:
        raise ImproperlyConfigured("Stripe webhooks need STRIPE_WEBHOOK_SECRET")
    return secrets


def _signature_verify(payload: bytes, signature: str | None) -> bool:
    """Check the signature; True when the Connect endpoint's secret signed the delivery.

    The platform endpoint and the Connect endpoint (events of connected accounts) each sign
    with their own secret; either may have sent this delivery.
    """
    for secret, is_connect in _webhook_secrets():
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature, secret, stripe.Webhook.DEFAULT_TOLERANCE
            )
        except stripe.SignatureVerificationError:
            continue
        except ValueError:
            raise WebhookRejected("the body is not UTF-8 JSON", code="invalid_payload") from None
        return is_connect
    raise WebhookRejected("the Stripe-Signature header does not match the body")


def _endpoint_check(event: VerifiedEvent, *, is_connect: bool) -> None:
    """A Connect-signed event must be a Connect type about the connected account it names;
    a platform-signed event must not be about a connected account at all."""
    account = event.payload.get("account")
    if not is_connect:
        if account is not None:
            raise WebhookRejected(
                "a connected account's event must come from the Connect endpoint",
                code="invalid_event_source",
            )
        return
    account_of = CONNECT_EVENT_ACCOUNT.get(event.type)
    if account_of is None:
        raise WebhookRejected(
            f"{event.type} is not a Connect event; the Connect secret cannot sign it",
            code="invalid_event_source",
        )
    if not isinstance(account, str) or not account or account != account_of(event.data_object):
        raise WebhookRejected(
            "the event's account is not the connected account its object belongs to",
            code="invalid_event_source",
        )


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(payload)
    except ValueError:
        raise WebhookRejected("the body is not JSON", code="invalid_payload") from None
    if not isinstance(parsed, dict):
        raise WebhookRejected("the body is not a Stripe event", code="invalid_payload")
    return parsed


def event_verify(payload: bytes, signature: str | None) -> VerifiedEvent:
    """Verify one delivery and parse it; raises ``WebhookRejected`` (400) on any doubt."""
    is_connect = _signature_verify(payload, signature)
    parsed = _json_object(payload)
    data = parsed.get("data")
    data_object = data.get("object") if isinstance(data, dict) else None
    event_id, event_type = parsed.get("id"), parsed.get("type")
    if not (
        isinstance(event_id, str)
        and event_id
        and isinstance(event_type, str)
        and isinstance(data_object, dict)
    ):
        raise WebhookRejected("the body is not a Stripe event", code="invalid_payload")
    event = VerifiedEvent(
        event_id=event_id,
        type=event_type,
        livemode=bool(parsed.get("livemode")),
        data_object=data_object,
        payload=parsed,
    )
    _endpoint_check(event, is_connect=is_connect)
    return event


EventHandler = Callable[[Mapping[str, Any]], StripeEventOutcome]


def _handlers() -> dict[str, EventHandler]:
    from ledger.payments import payouts, purchases

    # A money event's handler is one durable transaction (it locks the payment row and posts);
    # account.updated reads the account back from Stripe, so it holds no transaction open.
    return {
        "payment_intent.succeeded": durable(purchases.stripe_payment_succeeded),
        "payment_intent.payment_failed": durable(purchases.stripe_payment_failed),
        "charge.refunded": durable(purchases.stripe_charge_refunded),
        "charge.dispute.closed": durable(purchases.stripe_dispute_closed),
        "account.updated": payouts.stripe_account_updated,
    }


def _event_record(event: VerifiedEvent) -> StripeEvent:
    try:
        record, _ = StripeEvent.objects.get_or_create(
            event_id=event.event_id,
            defaults={"type": event.type, "livemode": event.livemode, "payload": event.payload},
        )
    except IntegrityError:
        # A concurrent delivery of the same event inserted it first.
        record = StripeEvent.objects.get(event_id=event.event_id)
    return record


def stripe_event_process(event: VerifiedEvent) -> StripeEventOutcome:
    """Record ``event`` once and run its handler unless an earlier delivery already did.

    Not one transaction: each money handler is a durable transaction of its own. A handler
    that fails leaves the event unprocessed and the delivery gets a 500, so Stripe sends it
    again; handlers are idempotent, so a retry after a partial run moves nothing twice.
    """
    record = _event_record(event)
    if record.processed_at is not None:
        return StripeEventOutcome(record.outcome)
    handler = _handlers().get(event.type)
    outcome = StripeEventOutcome.IGNORED if handler is None else handler(event.data_object)
    StripeEvent.objects.filter(pk=record.pk, processed_at__isnull=True).update(
        outcome=outcome, processed_at=timezone.now()
    )
    logger.info("stripe event %s (%s): %s", event.event_id, event.type, outcome)
    return outcome
