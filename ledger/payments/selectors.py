"""Reads of payments, payouts and connected accounts (restrictions: ``ledger.selectors``)."""

from __future__ import annotations

from typing import TypedDict

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from accounts.models import User
from ledger.models import Account, AccountKind
from ledger.payments.models import ConnectedAccount, Payment, Payout, PayoutStatus


def payments_of(user: User) -> QuerySet[Payment]:
    return Payment.objects.filter(user=user).order_by("-created_at", "-pk")


def payouts_of(user: User) -> QuerySet[Payout]:
    return Payout.objects.filter(owner=user).order_by("-created_at", "-pk")


def connected_account_of(user: User) -> ConnectedAccount | None:
    return ConnectedAccount.objects.filter(user=user).first()


class EarningsSummary(TypedDict):
    # Inside the dispute window (EARNINGS_DISPUTE_WINDOW_SECONDS): not payable yet.
    pending_micros: int
    # Payable: what a payout may take.
    available_micros: int
    # Requested payouts not transferred yet.
    in_payout_micros: int
    # Transferred to the owner's connected account.
    paid_micros: int


def earnings_summary(user: User) -> EarningsSummary:
    """A host owner's earnings: pending, available, on their way out, and paid."""
    balances = dict(
        Account.objects.filter(
            user=user, kind__in=[AccountKind.EARNINGS_PENDING, AccountKind.EARNINGS_AVAILABLE]
        ).values_list("kind", "balance_micros")
    )
    payouts = Payout.objects.filter(owner=user).aggregate(
        paid=Coalesce(Sum("amount_micros", filter=Q(status=PayoutStatus.PAID)), 0),
        in_payout=Coalesce(Sum("amount_micros", filter=Q(status=PayoutStatus.PENDING)), 0),
    )
    return {
        "pending_micros": int(balances.get(AccountKind.EARNINGS_PENDING, 0)),
        "available_micros": int(balances.get(AccountKind.EARNINGS_AVAILABLE, 0)),
        "in_payout_micros": int(payouts["in_payout"]),
        "paid_micros": int(payouts["paid"]),
    }
