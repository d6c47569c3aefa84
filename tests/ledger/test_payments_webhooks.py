"""The Stripe webhook over real HTTP: signatures, unknown types, duplicates and disorder."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests

from accounts.models import User
from ledger.models import AccountKind
from ledger.payments.models import Payment, PaymentStatus, StripeEvent, StripeEventOutcome
from ledger.services import ledger_reconcile
from tests.ledger.conftest import WEBHOOK_SECRET
from tests.ledger.payment_steps import WEBHOOK_PATH, balance, platform_balances, webhook_post
from tests.ledger.stripe_fakes import event_sign, stripe_event

pytestmark = pytest.mark.timeout(60)


def _stripe_payment(user: User, amount_micros: int, intent_id: str) -> Payment:
    return Payment.objects.create(
        user=user, amount_micros=amount_micros, provider="stripe", provider_payment_id=intent_id
    )


def _intent(payment: Payment, *, amount_cents: int | None = None) -> dict[str, Any]:
    return {
        "id": payment.provider_payment_id,
        "object": "payment_intent",
        "amount": payment.amount_micros // 10_000 if amount_cents is None else amount_cents,
        "currency": "usd",
        "status": "succeeded",
        "metadata": {"payment_id": str(payment.pk), "user_id": str(payment.user_id)},
    }


def _charge(payment: Payment, *, refunded_cents: int) -> dict[str, Any]:
    return {
        "id": f"ch_{payment.pk}",
        "object": "charge",
        "amount": payment.amount_micros // 10_000,
        "amount_refunded": refunded_cents,
        "refunded": refunded_cents * 10_000 == payment.amount_micros,
        "payment_intent": payment.provider_payment_id,
        "currency": "usd",
    }


def test_a_bad_signature_is_refused_and_nothing_is_stored(
    alice: User, stripe_payments: Any, live_server: Any
) -> None:
    # given
    payment = _stripe_payment(alice, 10_000_000, "pi_bad_sig")
    event = stripe_event("payment_intent.succeeded", _intent(payment))
    payload = json.dumps(event).encode()

    # when
    forged = webhook_post(
        live_server.url, event, WEBHOOK_SECRET, signature=event_sign(payload, "whsec_not_ours")
    )
    unsigned = requests.post(
        f"{live_server.url}{WEBHOOK_PATH}",
        data=payload,
        headers={"Content-Type": "application/json"},
        timeout=15,
    )
    stale = webhook_post(
        live_server.url,
        event,
        WEBHOOK_SECRET,
        signature=event_sign(payload, WEBHOOK_SECRET, timestamp=1_600_000_000),
    )

    # then
    assert [r.status_code for r in (forged, unsigned, stale)] == [400, 400, 400]
    assert forged.json()["error"]["code"] == "invalid_signature"
    assert StripeEvent.objects.count() == 0
    payment.refresh_from_db()
    assert (payment.status, payment.credited_at) == (PaymentStatus.PENDING, None)
    assert balance(AccountKind.WALLET, alice) == 0


def test_an_unknown_event_type_is_acknowledged_and_ignored(
    alice: User, stripe_payments: Any, live_server: Any
) -> None:
    # given
    event = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})

    # when
    response = webhook_post(live_server.url, event, WEBHOOK_SECRET)

    # then
    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "ignored"}
    stored = StripeEvent.objects.get()
    assert (stored.event_id, stored.outcome) == (event["id"], StripeEventOutcome.IGNORED)
    assert platform_balances() == {
        AccountKind.STRIPE_CLEARING: 0,
        AccountKind.PLATFORM_LOSS: 0,
        AccountKind.PAYOUTS_CLEARING: 0,
    }


def test_a_refund_before_the_success_event_credits_once_and_takes_back_once(
    alice: User, stripe_payments: Any, live_server: Any
) -> None:
    # given: Stripe delivers charge.refunded before payment_intent.succeeded
    payment = _stripe_payment(alice, 10_000_000, "pi_out_of_order")
    refunded = stripe_event("charge.refunded", _charge(payment, refunded_cents=400))
    succeeded = stripe_event("payment_intent.succeeded", _intent(payment))

    # when
    first = webhook_post(live_server.url, refunded, WEBHOOK_SECRET)
    late = webhook_post(live_server.url, succeeded, WEBHOOK_SECRET)
    again = webhook_post(live_server.url, refunded, WEBHOOK_SECRET)

    # then
    assert [r.status_code for r in (first, late, again)] == [200, 200, 200]
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_micros) == (PaymentStatus.SUCCEEDED, 4_000_000)
    assert balance(AccountKind.WALLET, alice) == 6_000_000
    assert balance(AccountKind.STRIPE_CLEARING) == -6_000_000
    assert balance(AccountKind.PLATFORM_LOSS) == 0
    assert alice.restrictions.count() == 0
    assert ledger_reconcile().is_clean


def test_cumulative_refund_events_out_of_order_take_back_the_latest_total(
    alice: User, stripe_payments: Any, live_server: Any
) -> None:
    # given: two partial refunds (3 then 5 in total); the second event arrives first
    payment = _stripe_payment(alice, 10_000_000, "pi_partial")
    webhook_post(
        live_server.url, stripe_event("payment_intent.succeeded", _intent(payment)), WEBHOOK_SECRET
    )
    second = stripe_event("charge.refunded", _charge(payment, refunded_cents=500))
    first = stripe_event("charge.refunded", _charge(payment, refunded_cents=300))

    # when
    replies = [webhook_post(live_server.url, e, WEBHOOK_SECRET) for e in (second, first)]

    # then
    assert [r.status_code for r in replies] == [200, 200]
    payment.refresh_from_db()
    assert payment.refunded_micros == 5_000_000
    assert balance(AccountKind.WALLET, alice) == 5_000_000


def test_a_failed_attempt_then_success_credits_the_payment(
    alice: User, stripe_payments: Any, live_server: Any
) -> None:
    # given
    payment = _stripe_payment(alice, 2_000_000, "pi_retry_card")
    failed = stripe_event(
        "payment_intent.payment_failed", {**_intent(payment), "status": "requires_payment_method"}
    )
    succeeded = stripe_event("payment_intent.succeeded", _intent(payment))

    # when
    webhook_post(live_server.url, failed, WEBHOOK_SECRET)
    status_after_failure = Payment.objects.get(pk=payment.pk).status
    webhook_post(live_server.url, succeeded, WEBHOOK_SECRET)
    webhook_post(live_server.url, failed, WEBHOOK_SECRET)

    # then
    assert status_after_failure == PaymentStatus.FAILED
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert balance(AccountKind.WALLET, alice) == 2_000_000


def test_a_success_event_for_another_amount_credits_nothing(
    alice: User, stripe_payments: Any, live_server: Any
) -> None:
    # given
    payment = _stripe_payment(alice, 10_000_000, "pi_tampered")
    event = stripe_event("payment_intent.succeeded", _intent(payment, amount_cents=100_000))

    # when
    response = webhook_post(live_server.url, event, WEBHOOK_SECRET)

    # then
    assert response.json() == {"received": True, "outcome": "ignored"}
    payment.refresh_from_db()
    assert (payment.status, payment.credited_at) == (PaymentStatus.PENDING, None)
    assert balance(AccountKind.WALLET, alice) == 0


@pytest.mark.postgres
def test_concurrent_deliveries_of_one_event_credit_once(
    alice: User, stripe_payments: Any, live_server: Any
) -> None:
    # given
    payment = _stripe_payment(alice, 8_000_000, "pi_concurrent")
    events = [stripe_event("payment_intent.succeeded", _intent(payment))] * 3 + [
        stripe_event("payment_intent.succeeded", _intent(payment))
    ]
    barrier = threading.Barrier(len(events))
    statuses: list[int] = []

    def deliver(event: dict[str, Any]) -> None:
        barrier.wait()
        statuses.append(webhook_post(live_server.url, event, WEBHOOK_SECRET).status_code)

    # when
    threads = [threading.Thread(target=deliver, args=(e,)) for e in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert statuses == [200] * 4
    assert balance(AccountKind.WALLET, alice) == 8_000_000
    assert StripeEvent.objects.count() == 2
