"""Reads of the ledger for the API, reports and other apps."""

from __future__ import annotations

from typing import TypedDict

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from accounts.models import User
from ledger.models import Account, AccountKind, Posting, ReconciliationRun

WALLET_LINE_KINDS = (AccountKind.WALLET, AccountKind.ESCROW)


class WalletBalances(TypedDict):
    # Everything the user owns: available + held.
    balance_micros: int
    # In the escrows of the user's jobs: committed, not spendable.
    held_micros: int
    # The wallet: what the user can spend on a new hold.
    available_micros: int


def wallet_balances(user: User) -> WalletBalances:
    """The user's credits: available (the wallet) and held (the sum of their job escrows)."""
    sums = Account.objects.filter(user=user, kind__in=WALLET_LINE_KINDS).aggregate(
        available=Coalesce(Sum("balance_micros", filter=Q(kind=AccountKind.WALLET)), 0),
        held=Coalesce(Sum("balance_micros", filter=Q(kind=AccountKind.ESCROW)), 0),
    )
    available, held = int(sums["available"]), int(sums["held"])
    return {
        "balance_micros": available + held,
        "held_micros": held,
        "available_micros": available,
    }


def wallet_transactions(user: User) -> QuerySet[Posting]:
    """The user's ledger lines (postings on their wallet and job escrows), newest first."""
    return (
        Posting.objects.filter(account__user=user, account__kind__in=WALLET_LINE_KINDS)
        .select_related("transaction", "account")
        .order_by("-id")
    )


def reconciliation_last() -> ReconciliationRun | None:
    return ReconciliationRun.objects.order_by("-started_at", "-pk").first()
