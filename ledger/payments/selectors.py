"""Reads of payments, payouts, connected accounts and restrictions."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from ledger.payments.models import AccountRestriction, ConnectedAccount, Payment, Payout


def payments_of(user: User) -> QuerySet[Payment]:
    return Payment.objects.filter(user=user).order_by("-created_at", "-pk")


def payouts_of(user: User) -> QuerySet[Payout]:
    return Payout.objects.filter(owner=user).order_by("-created_at", "-pk")


def connected_account_of(user: User) -> ConnectedAccount | None:
    return ConnectedAccount.objects.filter(user=user).first()


def restrictions_open(user_id: int) -> QuerySet[AccountRestriction]:
    return AccountRestriction.objects.filter(user_id=user_id, lifted_at__isnull=True).order_by("pk")


def user_is_restricted(user_id: int) -> bool:
    """Whether a refund or lost dispute left this user owing credits (see AccountRestriction)."""
    return restrictions_open(user_id).exists()
