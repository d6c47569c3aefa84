"""Steps shared by the payment tests: paying like the browser would, delivering signed events,
and reading balances."""

from __future__ import annotations

import json
from typing import Any

import requests
import stripe

from accounts.models import User
from ledger.models import Account, AccountKind
from tests.ledger.stripe_fakes import Localstripe, event_sign

WEBHOOK_PATH = "/api/v1/payments/stripe/webhook/"


def localstripe_client(server: Localstripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_browser", base_addresses={"api": server.url}, max_network_retries=0
    )


def card_pay(server: Localstripe, intent_id: str, *, card: str = "4242424242424242") -> str:
    """What Stripe.js does in the browser: a test card's payment method, then confirm.
    Returns the charge id."""
    client = localstripe_client(server)
    method = client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    client.v1.payment_intents.update(intent_id, {"payment_method": method.id})
    intent = client.v1.payment_intents.confirm(intent_id)
    assert intent.status == "succeeded"
    charge = intent.latest_charge
    return charge if isinstance(charge, str) else charge.id  # type: ignore[union-attr]


def webhook_post(
    base_url: str, event: dict[str, Any], secret: str, *, signature: str | None = None
) -> requests.Response:
    """Deliver ``event`` to the webhook endpoint, signed with ``secret`` like Stripe does."""
    payload = json.dumps(event).encode()
    return requests.post(
        f"{base_url}{WEBHOOK_PATH}",
        data=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": signature or event_sign(payload, secret),
        },
        timeout=15,
    )


def balance(kind: AccountKind, user: User | None = None) -> int:
    """An account's cached balance (0 when it was never used)."""
    account = Account.objects.filter(kind=kind, user=user, job_id__isnull=True).first()
    return 0 if account is None else account.balance_micros


def platform_balances() -> dict[str, int]:
    return {
        kind: balance(kind)
        for kind in (
            AccountKind.STRIPE_CLEARING,
            AccountKind.PLATFORM_LOSS,
            AccountKind.PAYOUTS_CLEARING,
        )
    }


def held(user: User) -> int:
    """What the user's running jobs hold in escrow."""
    escrows = Account.objects.filter(kind=AccountKind.ESCROW, user=user)
    return sum(escrow.balance_micros for escrow in escrows)
