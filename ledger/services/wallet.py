"""Credits into (and, for staff adjustments, out of) a user's wallet."""

from __future__ import annotations

from typing import Literal

from accounts.models import User
from config.errors import PermissionDenied, ValidationFailed
from ledger.models import AccountKind, LedgerTransaction, TransactionKind
from ledger.money import amount_validate, credits_format
from ledger.services.posting import Leg, _post, platform_ref, wallet_ref

CreditSource = Literal["purchase", "grant"]


def _reason_validate(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed(
            "a reason is required",
            code="reason_required",
            fields={"reason": ["a reason is required"]},
        )
    return reason.strip()


def _staff_validate(staff_user: User | None) -> User:
    if staff_user is None or not staff_user.is_active or not staff_user.is_staff:
        raise PermissionDenied(
            "only active staff may grant or adjust credits", code="staff_required"
        )
    return staff_user


def wallet_credit(
    *,
    user: User,
    amount_micros: int,
    key: str,
    reason: str,
    source: CreditSource = "purchase",
    staff_user: User | None = None,
) -> LedgerTransaction:
    """Put credits into ``user``'s wallet: a purchase (from stripe_clearing) or a staff grant.

    Moves money: locks the accounts in pk order, in the caller's transaction. Idempotent by
    ``key``; the same key with another amount or user raises ``Conflict``. A grant needs an
    active staff ``staff_user``, who is recorded on the transaction.
    """
    amount = amount_validate(amount_micros)
    memo = _reason_validate(reason)
    if source == "purchase":
        kind, funding, created_by = TransactionKind.PURCHASE, AccountKind.STRIPE_CLEARING, None
    elif source == "grant":
        kind, funding = TransactionKind.GRANT, AccountKind.GRANTS
        created_by = _staff_validate(staff_user)
    else:
        raise ValidationFailed(f"unknown credit source {source!r}", code="invalid_source")
    wallet, funder = wallet_ref(user.pk), platform_ref(funding)
    posted = _post(
        kind=kind,
        key=key,
        accounts=[wallet, funder],
        legs=[Leg(funder, -amount), Leg(wallet, amount)],
        memo=memo,
        created_by=created_by,
    )
    assert posted is not None
    return posted


def credits_adjust(
    *,
    user: User,
    amount_micros: int,
    reason: str,
    staff_user: User,
    key: str,
) -> LedgerTransaction:
    """A staff correction of ``user``'s wallet: positive adds credits, negative takes them back.

    Writes an ``adjustment`` transaction against the platform's grants account with the reason
    and the staff user; it never edits an existing transaction. Taking back more than the wallet
    holds raises ``InsufficientCredits`` and changes nothing. Moves money under row locks taken in
    pk order, idempotent by ``key``.
    """
    if isinstance(amount_micros, int) and not isinstance(amount_micros, bool) and amount_micros < 0:
        amount = -amount_validate(-amount_micros)
    else:
        amount = amount_validate(amount_micros)
    memo = _reason_validate(reason)
    staff = _staff_validate(staff_user)
    wallet, grants = wallet_ref(user.pk), platform_ref(AccountKind.GRANTS)
    posted = _post(
        kind=TransactionKind.ADJUSTMENT,
        key=key,
        accounts=[wallet, grants],
        legs=[Leg(grants, -amount), Leg(wallet, amount)],
        memo=memo,
        created_by=staff,
        metadata={"staff_user_id": staff.pk, "summary": credits_format(amount)},
    )
    assert posted is not None
    return posted
