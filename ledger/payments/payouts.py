"""Payouts to host owners: Stripe Connect onboarding and the transfer behind each payout.

A payout's money moves in ``ledger.payments.money`` (request: earnings_available ->
payouts_clearing at once; complete; fail), each step a ``durable_call`` of its own with the
Stripe call between them outside any transaction. This module creates the owner's Express
account, hands out onboarding links, follows ``account.updated`` and makes the transfer itself
(``ledger.payments.tasks.payout_start`` requests a payout and queues its transfer).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from accounts.models import User
from config.errors import NotFound
from config.transactions import durable_call
from ledger.payments.gateways import payment_provider
from ledger.payments.models import (
    ConnectedAccount,
    OnboardingStatus,
    Payout,
    PayoutStatus,
    StripeEventOutcome,
)
from ledger.payments.money import payout_complete, payout_fail
from ledger.payments.providers import ConnectedAccountState, ProviderError
from ledger.payments.purchases import ProviderUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Onboarding:
    account: ConnectedAccount
    # None once onboarding is complete: there is nothing left to fill in.
    url: str | None


def _account_create(user: User) -> ConnectedAccount:
    provider = payment_provider()
    state = provider.connected_account_create(
        user_id=user.pk, email=user.email, idempotency_key=f"connected-account:{user.pk}"
    )
    try:
        account, _ = ConnectedAccount.objects.get_or_create(
            user=user,
            defaults={
                "provider": provider.name,
                "stripe_account_id": state.account_id,
                "onboarding_status": state.onboarding_status,
            },
        )
    except IntegrityError:
        # A concurrent request created it first (with the same Stripe account: same key).
        account = ConnectedAccount.objects.get(user=user)
    return account


def _status_store(account: ConnectedAccount, state: ConnectedAccountState) -> ConnectedAccount:
    status = OnboardingStatus(state.onboarding_status)
    if account.onboarding_status != status:
        ConnectedAccount.objects.filter(pk=account.pk).update(onboarding_status=status)
        account.onboarding_status = status
    return account


def connected_account_status_sync(account: ConnectedAccount) -> ConnectedAccount:
    """Read the account's onboarding status from the provider (the owner may just be back)."""
    state = payment_provider(account.provider).connected_account_fetch(account.stripe_account_id)
    return _status_store(account, state)


def connected_account_onboard(*, user: User) -> Onboarding:
    """Create the owner's Express account (once: Stripe key ``connected-account:<user>``) and
    return a fresh onboarding link, or no link when onboarding is already complete."""
    try:
        account = ConnectedAccount.objects.filter(user=user).first() or _account_create(user)
        if account.onboarding_status != OnboardingStatus.COMPLETE:
            account = connected_account_status_sync(account)
        if account.onboarding_status == OnboardingStatus.COMPLETE:
            return Onboarding(account, None)
        # A link is single-use and expires within minutes, so every request needs a new one;
        # the random key still makes the library's own network retries create only one.
        url = payment_provider(account.provider).onboarding_link_create(
            account_id=account.stripe_account_id,
            idempotency_key=f"account-link:{account.pk}:{uuid.uuid4().hex}",
        )
    except ProviderError as exc:
        raise ProviderUnavailable(f"the payment provider failed: {exc.message}") from exc
    return Onboarding(account, url)


def stripe_account_updated(data: Mapping[str, Any]) -> StripeEventOutcome:
    """``account.updated`` (Connect): store the account's onboarding status.

    The status is read back from Stripe rather than taken from the event: events can arrive out
    of order, and an old "pending" must not undo a newer "complete" (nor the reverse).
    """
    account = ConnectedAccount.objects.filter(stripe_account_id=data.get("id") or "").first()
    if account is None:
        return StripeEventOutcome.IGNORED
    try:
        connected_account_status_sync(account)
    except ProviderError as exc:
        # Unanswered, Stripe delivers the event again later.
        raise ProviderUnavailable(f"the payment provider failed: {exc.message}") from exc
    return StripeEventOutcome.PROCESSED


def payouts_stalled(*, older_than: timedelta) -> list[int]:
    """Pending payouts whose transfer should have finished by now (a lost queue message,
    Celery's retries exhausted during a long Stripe outage): their ids, oldest first."""
    cutoff = timezone.now() - older_than
    return list(
        Payout.objects.filter(status=PayoutStatus.PENDING, created_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def payout_transfer(*, payout_id: int) -> Payout:
    """Make the Stripe transfer of a pending payout; success finalises it, a refusal reverses it.

    Safe to run any number of times: the transfer's idempotency key is ``payout:<pk>``, so
    Stripe makes it once, and a finished payout is left alone. A transient failure (network,
    Stripe's 5xx, rate limit) raises ``ProviderError`` for the caller to retry later with the
    same key; the money stays in payouts_clearing meanwhile, since the transfer may have gone
    through.
    """
    payout = Payout.objects.select_related("connected_account").filter(pk=payout_id).first()
    if payout is None:
        raise NotFound(f"payout {payout_id} does not exist", code="payout_not_found")
    if payout.status != PayoutStatus.PENDING:
        return payout
    account = payout.connected_account
    try:
        transfer = payment_provider(account.provider).transfer_create(
            account_id=account.stripe_account_id,
            amount_micros=payout.amount_micros,
            payout_id=payout.pk,
            idempotency_key=payout.transfer_idempotency_key,
        )
    except ProviderError as exc:
        if exc.is_transient:
            logger.warning("payout %s: transfer failed, will retry: %s", payout.pk, exc.message)
            raise
        logger.warning("payout %s: transfer refused: %s", payout.pk, exc.message)
        return durable_call(payout_fail, payout_id=payout.pk, reason=exc.message)
    return durable_call(payout_complete, payout_id=payout.pk, transfer_id=transfer.transfer_id)
