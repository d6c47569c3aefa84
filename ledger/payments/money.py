"""Money of payments: purchases, refunds and lost disputes, payouts (docs/payments.md).

The same rules as every ledger service: each joins its caller's transaction (the entry point's
``config.transactions.durable``: a webhook handler, a payout step) and opens none, posts through
the ledger's one writer (``_post``), accounts locked in pk order by the writer, idempotent by
key. Each service also locks its payment or payout row first (``SELECT … FOR UPDATE``) and
changes that row in the same transaction, so the row and the ledger never disagree and a
repeated or concurrent call finds the work done. Lock order: payment or payout row, then the
user's open restrictions, then ledger accounts.

- Purchase: stripe_clearing -> wallet (an organisation's purchase: -> its wallet); a user (an
  organisation) who owes credits repays them first (wallet -> platform_loss, in the same
  transaction).
- Refund or lost dispute: wallet -> stripe_clearing for what the wallet holds; the rest (credits
  spent, or held by running jobs) platform_loss -> stripe_clearing, and the user is restricted
  (``AccountRestriction``) until later purchases repay it or staff write it off.
- Payout: earnings_available -> payouts_clearing when requested; payouts_clearing ->
  stripe_clearing (the money leaves the platform's Stripe balance) when the transfer succeeds;
  payouts_clearing -> earnings_available when it is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from accounts.models import User
from config.errors import Conflict, NotFound, PermissionDenied, Unprocessable, ValidationFailed
from ledger.models import (
    Account,
    AccountKind,
    AccountRestriction,
    RestrictionReason,
    TransactionKind,
)
from ledger.payments.models import (
    ConnectedAccount,
    OnboardingStatus,
    Payment,
    PaymentStatus,
    Payout,
    PayoutStatus,
)
from ledger.payments.providers import amount_integer_validate, amount_whole_cents_validate
from ledger.selectors import (
    organisation_restrictions_open,
    restrictions_open,
    user_is_restricted,
)
from ledger.services.posting import (
    AccountRef,
    Leg,
    Replay,
    _post,
    earnings_available_ref,
    organisation_wallet_ref,
    platform_ref,
    wallet_ref,
)


@dataclass
class _Taken:
    """What the wallet gave once the accounts were locked (legs are computed under the lock)."""

    micros: int = 0


def _payment_lock(payment_id: int) -> Payment:
    payment = Payment.objects.select_for_update().filter(pk=payment_id).first()
    if payment is None:
        raise NotFound(f"payment {payment_id} does not exist", code="payment_not_found")
    return payment


def _restrictions_repay(restrictions: list[AccountRestriction], repaid_micros: int) -> None:
    """Spread a repayment over open restrictions, oldest first; lift those fully repaid."""
    for restriction in restrictions:
        share = min(repaid_micros, restriction.outstanding_micros)
        if share == 0:
            break
        repaid_micros -= share
        restriction.recovered_micros += share
        if restriction.outstanding_micros == 0:
            restriction.lifted_at = timezone.now()
        restriction.save(update_fields=["recovered_micros", "lifted_at"])


def _paid_wallet(payment: Payment) -> AccountRef:
    """The wallet a payment funds: the buyer's, or the organisation's it names."""
    if payment.organisation_id is not None:
        return organisation_wallet_ref(payment.organisation_id)
    return wallet_ref(payment.user_id)


def _restrictions_owed(payment: Payment) -> list[AccountRestriction]:
    """The open restrictions a purchase repays first, locked (only their own rows): the
    buyer's own, or for an organisation's purchase the organisation's."""
    if payment.organisation_id is not None:
        owed = organisation_restrictions_open(payment.organisation_id)
    else:
        owed = restrictions_open(payment.user_id)
    return list(owed.select_for_update(of=("self",)))


def _credit(payment: Payment) -> Payment:
    if payment.credited_at is not None:
        return payment
    restrictions = _restrictions_owed(payment)
    owed = sum(restriction.outstanding_micros for restriction in restrictions)
    wallet, clearing = _paid_wallet(payment), platform_ref(AccountKind.STRIPE_CLEARING)
    loss = platform_ref(AccountKind.PLATFORM_LOSS)
    amount = payment.amount_micros
    repaid = _Taken()

    def legs(locked: Mapping[AccountRef, Account]) -> list[Leg]:
        repaid.micros = min(owed, locked[wallet].balance_micros + amount) if owed else 0
        return [
            Leg(clearing, -amount),
            Leg(wallet, amount - repaid.micros),
            Leg(loss, repaid.micros),
        ]

    _post(
        kind=TransactionKind.PURCHASE,
        key=f"purchase:{payment.pk}",
        # platform_loss is locked only when there is a debt to repay: purchases don't queue on it.
        accounts=[wallet, clearing, loss] if owed else [wallet, clearing],
        legs=legs,
        replay=Replay.SAME_CAUSE,
        memo=f"purchase of credits (payment {payment.pk})",
        metadata={
            "payment_id": payment.pk,
            "provider": payment.provider,
            "restriction_ids": [restriction.pk for restriction in restrictions],
        },
    )
    _restrictions_repay(restrictions, repaid.micros)
    payment.status = PaymentStatus.SUCCEEDED
    payment.credited_at = timezone.now()
    payment.save(update_fields=["status", "credited_at", "updated_at"])
    return payment


def payment_credit(*, payment_id: int) -> Payment:
    """Credit a paid purchase to the buyer's wallet (stripe_clearing -> wallet), once.

    Whatever the number or order of deliveries, the first call credits and later ones return the
    payment unchanged. If the buyer owes credits from a refund or lost dispute, the wallet repays
    that first (wallet -> platform_loss, same transaction) and the restrictions repaid in full
    are lifted. Moves money: locks the payment row, the buyer's open restrictions, then the
    accounts, in the caller's transaction; ledger key ``purchase:<payment pk>``.
    """
    return _credit(_payment_lock(payment_id))


def _take_back(payment: Payment, amount_micros: int, reason: RestrictionReason, key: str) -> None:
    """Move ``amount_micros`` of ``payment`` back to stripe_clearing: from the wallet as far as
    it goes, the rest from platform_loss, and restrict the user for that rest (an
    organisation's purchase: its wallet, and the restriction, naming the payment, restricts
    the organisation)."""
    wallet, clearing = _paid_wallet(payment), platform_ref(AccountKind.STRIPE_CLEARING)
    loss = platform_ref(AccountKind.PLATFORM_LOSS)
    taken = _Taken()

    def legs(locked: Mapping[AccountRef, Account]) -> list[Leg]:
        taken.micros = min(amount_micros, locked[wallet].balance_micros)
        shortfall = amount_micros - taken.micros
        return [Leg(wallet, -taken.micros), Leg(loss, -shortfall), Leg(clearing, amount_micros)]

    _post(
        kind=TransactionKind.REFUND,
        key=key,
        accounts=[wallet, clearing, loss],
        legs=legs,
        replay=Replay.SAME_CAUSE,
        memo=f"{reason.label} (payment {payment.pk})",
        metadata={"payment_id": payment.pk, "reason": str(reason)},
    )
    shortfall = amount_micros - taken.micros
    if shortfall:
        AccountRestriction.objects.create(
            user_id=payment.user_id, payment=payment, reason=reason, shortfall_micros=shortfall
        )


def _status_after_reversal(payment: Payment) -> None:
    if payment.reversed_micros == payment.amount_micros:
        payment.status = PaymentStatus.REFUNDED


def payment_refund_sync(*, payment_id: int, refunded_micros: int) -> Payment:
    """Bring the payment's refunds up to ``refunded_micros`` (Stripe's cumulative total).

    Takes back only the increase since the last call, so duplicate and reordered refund events
    take nothing twice. A refund that arrives before the payment was credited credits it first
    (a refund proves the payment went through). What the wallet no longer holds is booked to
    platform_loss and restricts the user. Moves money: locks the payment row, then the accounts,
    in the caller's transaction; ledger key ``refund:<payment>:<cumulative micros>``.
    """
    payment_credit(payment_id=payment_id)

    payment = _payment_lock(payment_id)
    target = min(refunded_micros, payment.amount_micros - payment.disputed_micros)
    increase = target - payment.refunded_micros
    if increase <= 0:
        return payment
    _take_back(payment, increase, RestrictionReason.REFUND, f"refund:{payment.pk}:{target}")
    payment.refunded_micros = target
    _status_after_reversal(payment)
    payment.save(update_fields=["refunded_micros", "status", "updated_at"])
    return payment


def payment_dispute_lose(*, payment_id: int, dispute_id: str, amount_micros: int) -> Payment:
    """Take back a lost dispute's amount, once (a charge has at most one dispute).

    The same rules as a refund: the wallet first, the rest to platform_loss with a restriction.
    Moves money: locks the payment row, then the accounts, in the caller's transaction; ledger
    key ``dispute:<dispute id>``.
    """
    payment_credit(payment_id=payment_id)

    payment = _payment_lock(payment_id)
    amount = min(amount_micros, payment.amount_micros - payment.refunded_micros)
    if payment.disputed_micros or amount <= 0:
        return payment
    _take_back(payment, amount, RestrictionReason.DISPUTE, f"dispute:{dispute_id}")
    payment.disputed_micros = amount
    _status_after_reversal(payment)
    payment.save(update_fields=["disputed_micros", "status", "updated_at"])
    return payment


# --- Payouts ----------------------------------------------------------------------------------


def payout_amount_validate(amount_micros: object) -> int:
    minimum = settings.PAYOUT_MIN_MICROS
    amount = amount_integer_validate(amount_micros)
    if amount < minimum:
        raise ValidationFailed(
            f"a payout is at least {minimum} micro-credits",
            code="payout_below_minimum",
            fields={"amount_micros": ["below the payout minimum"]},
        )
    return amount_whole_cents_validate(amount)


def payout_replayed(owner: User, idempotency_key: str, amount_micros: int) -> Payout | None:
    if not idempotency_key:
        return None
    payout = Payout.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
    if payout is not None and payout.amount_micros != amount_micros:
        raise Unprocessable(
            "this Idempotency-Key was used for a payout of another amount",
            code="idempotency_key_reused",
            fields={"amount_micros": ["differs from the first request with this key"]},
        )
    return payout


def _payout_destination(owner: User) -> ConnectedAccount:
    account = ConnectedAccount.objects.filter(user=owner).first()
    if account is None or account.onboarding_status != OnboardingStatus.COMPLETE:
        raise Conflict(
            "connect a payout account and finish its onboarding first",
            code="payout_account_not_ready",
        )
    if user_is_restricted(owner.pk):
        raise PermissionDenied(
            "payouts are blocked while this account owes credits from a refund or dispute",
            code="account_restricted",
        )
    return account


def payout_request(*, owner: User, amount_micros: int, idempotency_key: str = "") -> Payout:
    """Reserve ``amount_micros`` of the owner's available earnings for a payout.

    Moves earnings_available -> payouts_clearing at once, together with the new payout row; the
    transfer happens later (``ledger.payments.payouts.payout_transfer``). Concurrent requests
    queue on the owner's earnings_available row lock, so together they never take more than is
    available: one that would overdraw it gets ``InsufficientCredits`` (402,
    ``insufficient_earnings``) and leaves nothing behind. A repeat with the same
    ``idempotency_key`` returns the first payout; another amount is 422. Moves money: the caller's
    transaction, accounts locked in pk order; ledger key ``payout:<pk>``.
    """
    amount = payout_amount_validate(amount_micros)
    replayed = payout_replayed(owner, idempotency_key, amount)
    if replayed is not None:
        return replayed
    account = _payout_destination(owner)
    available, clearing = (
        earnings_available_ref(owner.pk),
        platform_ref(AccountKind.PAYOUTS_CLEARING),
    )

    payout = Payout.objects.create(
        owner=owner,
        connected_account=account,
        amount_micros=amount,
        idempotency_key=idempotency_key,
    )
    _post(
        kind=TransactionKind.PAYOUT,
        key=payout.transfer_idempotency_key,
        accounts=[available, clearing],
        legs=[Leg(available, -amount), Leg(clearing, amount)],
        memo=f"payout {payout.pk} requested",
        metadata={"payout_id": payout.pk},
    )
    return payout


def _payout_lock(payout_id: int) -> Payout:
    payout = Payout.objects.select_for_update().filter(pk=payout_id).first()
    if payout is None:
        raise NotFound(f"payout {payout_id} does not exist", code="payout_not_found")
    return payout


def payout_complete(*, payout_id: int, transfer_id: str) -> Payout:
    """The transfer went through: payouts_clearing -> stripe_clearing, the payout is ``paid``.

    A payout that is no longer pending is returned unchanged. Moves money: locks the payout row,
    then the accounts, in the caller's transaction; ledger key ``payout:<pk>:paid``.
    """

    payout = _payout_lock(payout_id)
    if payout.status != PayoutStatus.PENDING:
        return payout
    clearing = platform_ref(AccountKind.PAYOUTS_CLEARING)
    stripe = platform_ref(AccountKind.STRIPE_CLEARING)
    _post(
        kind=TransactionKind.PAYOUT_PAID,
        key=f"{payout.transfer_idempotency_key}:paid",
        accounts=[clearing, stripe],
        legs=[Leg(clearing, -payout.amount_micros), Leg(stripe, payout.amount_micros)],
        memo=f"payout {payout.pk} transferred ({transfer_id})",
        metadata={"payout_id": payout.pk, "transfer_id": transfer_id},
    )
    payout.status = PayoutStatus.PAID
    payout.stripe_transfer_id = transfer_id
    payout.completed_at = timezone.now()
    payout.save(update_fields=["status", "stripe_transfer_id", "completed_at", "updated_at"])
    return payout


def payout_fail(*, payout_id: int, reason: str) -> Payout:
    """The transfer was refused: payouts_clearing -> earnings_available, the payout ``failed``.

    A payout that is no longer pending is returned unchanged. Moves money: locks the payout row,
    then the accounts, in the caller's transaction; ledger key ``payout:<pk>:failed``.
    """

    payout = _payout_lock(payout_id)
    if payout.status != PayoutStatus.PENDING:
        return payout
    clearing = platform_ref(AccountKind.PAYOUTS_CLEARING)
    available = earnings_available_ref(payout.owner_id)
    _post(
        kind=TransactionKind.PAYOUT_REVERSAL,
        key=f"{payout.transfer_idempotency_key}:failed",
        accounts=[clearing, available],
        legs=[Leg(clearing, -payout.amount_micros), Leg(available, payout.amount_micros)],
        memo=f"payout {payout.pk} failed: {reason}"[:500],
        metadata={"payout_id": payout.pk},
    )
    payout.status = PayoutStatus.FAILED
    payout.failure_reason = reason[:1000]
    payout.completed_at = timezone.now()
    payout.save(update_fields=["status", "failure_reason", "completed_at", "updated_at"])
    return payout
