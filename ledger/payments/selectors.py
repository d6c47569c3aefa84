"""Reads of payments, payouts and connected accounts (restrictions: ``ledger.selectors``)."""

from __future__ import annotations

from typing import TypedDict

from django.db.models import BigIntegerField, CharField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce

from accounts.models import User
from ledger.models import Account, AccountKind, Posting
from ledger.payments.models import ConnectedAccount, Payment, Payout, PayoutStatus


def payments_of(user: User) -> QuerySet[Payment]:
    """The user's own purchases (not those they made for an organisation's wallet)."""
    return Payment.objects.filter(user=user, organisation=None).order_by("-created_at", "-pk")


def organisation_payments_of(organisation_id: int) -> QuerySet[Payment]:
    """The purchases for the organisation's wallet, newest first, with their buyers."""
    return (
        Payment.objects.filter(organisation_id=organisation_id)
        .select_related("user")
        .order_by("-created_at", "-pk")
    )


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


def organisation_wallet_lines(organisation_id: int) -> QuerySet[Posting]:
    """The postings on the organisation's wallet, newest first, each with the member whose pool
    job it paid or was returned from (the escrow's user) and who bought or granted it."""
    escrow = Posting.objects.filter(
        transaction_id=OuterRef("transaction_id"), account__kind=AccountKind.ESCROW
    ).order_by("pk")
    payment_id = Cast(
        KeyTextTransform("payment_id", OuterRef("transaction__metadata")), BigIntegerField()
    )
    buyer = Payment.objects.filter(pk=payment_id).values("user__username")[:1]
    return (
        Posting.objects.filter(
            account__kind=AccountKind.ORGANISATION_WALLET, account__organisation_id=organisation_id
        )
        .select_related("transaction")
        .annotate(
            member_id=Subquery(escrow.values("account__user_id")[:1]),
            member_username=Subquery(escrow.values("account__user__username")[:1]),
            by_username=Coalesce(
                Subquery(buyer, output_field=CharField()),
                "transaction__created_by__username",
                output_field=CharField(),
            ),
        )
        .order_by("-id")
    )
