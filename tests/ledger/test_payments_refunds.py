"""Refunds and lost disputes after the credits were partly spent: the unspent part comes back,
the shortfall is booked to platform_loss, and the renter is restricted until it is repaid."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from pytest_django.fixtures import Settings

from accounts.models import User
from config.errors import PermissionDenied
from config.transactions import durable_call
from ledger.models import AccountKind, AccountRestriction, LedgerTransaction, RestrictionReason
from ledger.payments.models import Payment, PaymentStatus
from ledger.payments.money import payment_credit, payment_dispute_lose
from ledger.services import hold_place, ledger_reconcile, restriction_lift
from tests.ledger.conftest import WEBHOOK_SECRET, wait_for
from tests.ledger.payment_steps import (
    WEBHOOK_PATH,
    balance,
    card_pay,
    held,
    localstripe_client,
    webhook_post,
)
from tests.ledger.stripe_fakes import Localstripe, stripe_event

pytestmark = pytest.mark.timeout(60)


def _paid_with_stripe(
    server: Localstripe, http: requests.Session, payment_id_of: list[int], amount_micros: int
) -> str:
    body = http.post("/api/v1/payments/", json={"amount_micros": amount_micros}).json()
    payment_id_of.append(body["id"])
    charge_id = card_pay(server, body["provider_payment_id"])
    wait_for(lambda: Payment.objects.get(pk=body["id"]).credited_at is not None)
    return charge_id


def test_a_refund_after_the_credits_were_partly_spent(
    alice: User,
    stripe_payments: Localstripe,
    live_server: Any,
    http_as: Callable[[User], requests.Session],
) -> None:
    # given: alice bought 10 credits and has 7 of them held by a running job
    stripe_payments.webhook_register(f"{live_server.url}{WEBHOOK_PATH}", WEBHOOK_SECRET)
    payment_ids: list[int] = []
    charge_id = _paid_with_stripe(stripe_payments, http_as(alice), payment_ids, 10_000_000)
    durable_call(hold_place, user=alice, job_id=41, amount_micros=7_000_000, key="hold:41")
    stripe = localstripe_client(stripe_payments)
    stripe.v1.refunds.create({"charge": charge_id}, {"idempotency_key": "refund-test-1"})
    charge = stripe.v1.charges.retrieve(charge_id)
    refunded = stripe_event("charge.refunded", charge.to_dict())

    # when: Stripe reports the full refund (localstripe doesn't send it: we sign it)
    response = webhook_post(live_server.url, refunded, WEBHOOK_SECRET)
    again = webhook_post(live_server.url, refunded, WEBHOOK_SECRET)

    # then
    assert (response.status_code, again.status_code) == (200, 200)
    assert charge.amount_refunded == 1000
    payment = Payment.objects.get(pk=payment_ids[0])
    assert (payment.status, payment.refunded_micros) == (PaymentStatus.REFUNDED, 10_000_000)
    assert (balance(AccountKind.WALLET, alice), held(alice)) == (0, 7_000_000)
    assert balance(AccountKind.PLATFORM_LOSS) == -7_000_000
    assert balance(AccountKind.STRIPE_CLEARING) == 0
    restriction = AccountRestriction.objects.get()
    assert (restriction.user_id, restriction.reason, restriction.shortfall_micros) == (
        alice.pk,
        RestrictionReason.REFUND,
        7_000_000,
    )
    assert restriction.lifted_at is None
    assert LedgerTransaction.objects.filter(key__startswith="refund:").count() == 1
    assert ledger_reconcile().is_clean


def test_a_restricted_renter_can_place_no_new_hold(alice: User, settings: Settings) -> None:
    # given: 10 bought, 7 held, all refunded: 7 owed
    settings.PAYMENT_PROVIDER = "demo"
    payment = Payment.objects.create(user=alice, amount_micros=10_000_000, provider="demo")
    durable_call(payment_credit, payment_id=payment.pk)
    durable_call(hold_place, user=alice, job_id=1, amount_micros=7_000_000, key="hold:1")
    durable_call(
        payment_dispute_lose, payment_id=payment.pk, dispute_id="dp_1", amount_micros=10_000_000
    )

    # when
    with pytest.raises(PermissionDenied) as refused:
        durable_call(hold_place, user=alice, job_id=2, amount_micros=1, key="hold:2")

    # then
    assert refused.value.code == "account_restricted"
    assert (balance(AccountKind.WALLET, alice), held(alice)) == (0, 7_000_000)
    assert LedgerTransaction.objects.filter(key="hold:2").count() == 0


def test_a_later_purchase_repays_the_shortfall_and_lifts_the_restriction(
    alice: User, settings: Settings
) -> None:
    # given: alice owes 7 credits after a lost dispute
    settings.PAYMENT_PROVIDER = "demo"
    first = Payment.objects.create(user=alice, amount_micros=10_000_000, provider="demo")
    durable_call(payment_credit, payment_id=first.pk)
    durable_call(hold_place, user=alice, job_id=1, amount_micros=7_000_000, key="hold:1")
    durable_call(
        payment_dispute_lose, payment_id=first.pk, dispute_id="dp_1", amount_micros=10_000_000
    )
    small = Payment.objects.create(user=alice, amount_micros=5_000_000, provider="demo")
    large = Payment.objects.create(user=alice, amount_micros=4_000_000, provider="demo")

    # when
    durable_call(payment_credit, payment_id=small.pk)
    after_small = AccountRestriction.objects.get()
    durable_call(payment_credit, payment_id=large.pk)
    durable_call(payment_credit, payment_id=large.pk)

    # then
    assert (after_small.recovered_micros, after_small.lifted_at) == (5_000_000, None)
    restriction = AccountRestriction.objects.get()
    assert restriction.recovered_micros == 7_000_000
    assert restriction.lifted_at is not None
    assert balance(AccountKind.WALLET, alice) == 2_000_000
    assert balance(AccountKind.PLATFORM_LOSS) == 0
    assert balance(AccountKind.STRIPE_CLEARING) == -9_000_000
    durable_call(hold_place, user=alice, job_id=2, amount_micros=1_000_000, key="hold:2")
    assert ledger_reconcile().is_clean


def test_a_lost_dispute_is_taken_back_once_and_a_won_one_changes_nothing(
    alice: User, stripe_payments: Localstripe, live_server: Any
) -> None:
    # given
    payment = Payment.objects.create(
        user=alice, amount_micros=6_000_000, provider="stripe", provider_payment_id="pi_disputed"
    )
    durable_call(payment_credit, payment_id=payment.pk)
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 600,
        "charge": "ch_1",
        "payment_intent": "pi_disputed",
        "currency": "usd",
    }

    # when
    won = webhook_post(
        live_server.url,
        stripe_event("charge.dispute.closed", {**dispute, "status": "won"}),
        WEBHOOK_SECRET,
    )
    balance_after_won = balance(AccountKind.WALLET, alice)
    lost = stripe_event("charge.dispute.closed", {**dispute, "status": "lost"})
    replies = [webhook_post(live_server.url, lost, WEBHOOK_SECRET) for _ in range(2)]

    # then
    assert won.status_code == 200
    assert balance_after_won == 6_000_000
    assert [r.status_code for r in replies] == [200, 200]
    payment.refresh_from_db()
    assert (payment.status, payment.disputed_micros) == (PaymentStatus.REFUNDED, 6_000_000)
    assert balance(AccountKind.WALLET, alice) == 0
    assert balance(AccountKind.PLATFORM_LOSS) == 0
    assert AccountRestriction.objects.count() == 0


def test_staff_can_write_off_a_restriction_and_others_cannot(
    alice: User, mallory: User, staff: User, settings: Settings
) -> None:
    # given
    settings.PAYMENT_PROVIDER = "demo"
    payment = Payment.objects.create(user=alice, amount_micros=10_000_000, provider="demo")
    durable_call(payment_credit, payment_id=payment.pk)
    durable_call(hold_place, user=alice, job_id=1, amount_micros=4_000_000, key="hold:1")
    durable_call(
        payment_dispute_lose, payment_id=payment.pk, dispute_id="dp_1", amount_micros=10_000_000
    )
    restriction = AccountRestriction.objects.get()

    # when
    with pytest.raises(PermissionDenied):
        restriction_lift(restriction_id=restriction.pk, staff_user=mallory)
    still_open = AccountRestriction.objects.get().lifted_at is None
    restriction_lift(restriction_id=restriction.pk, staff_user=staff)

    # then
    assert still_open is True
    restriction.refresh_from_db()
    assert (restriction.lifted_by_id, restriction.recovered_micros) == (staff.pk, 0)
    assert balance(AccountKind.PLATFORM_LOSS) == -4_000_000
