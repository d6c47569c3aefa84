"""An organisation's wallet: its funding (grants), its members' pool-job holds and their caps.

The institution pays for its members' pool jobs (docs/pools.md, "The institution pays"): a pool
job's hold moves from the organisation's wallet into the job's escrow, whose ``user`` stays the
renter (who spent) and whose ``organisation`` names the payer, so its release (``hold_release``)
returns the rest there. Charges, fees and reversals of that escrow are those of any job.

**The member's monthly cap.** What a member spent of the organisation's wallet in a calendar
month (UTC) is, over the escrows of their pool jobs of that organisation whose hold was placed
in the month (the escrow is created with the job's first hold), holds in minus releases out:
while a job runs that is its whole open hold, once it settled exactly its charges net of
reversals. A hold that would take it past ``Membership.monthly_cap_micros`` is refused (402
``member_cap_exceeded``) and writes nothing.

**Locks.** ``organisation_hold_place`` locks the member's ``Membership`` row
(``SELECT … FOR NO KEY UPDATE``) before the ledger's accounts: two holds of one member take
turns, so the second reads the first's hold once it committed and the cap holds under any
concurrency; holds of other members don't wait for it. The global order is in docs/ledger.md
("Lock order").
"""

from __future__ import annotations

from collections.abc import Mapping

from accounts.models import Membership, Organisation, User
from config.errors import Conflict, InsufficientCredits, PermissionDenied
from ledger.models import Account, AccountKind, LedgerTransaction, TransactionKind
from ledger.money import amount_validate
from ledger.selectors import member_month_spent, organisation_is_restricted
from ledger.services.holds import _id_validate
from ledger.services.posting import (
    AccountRef,
    Leg,
    _post,
    escrow_ref,
    organisation_wallet_ref,
    platform_ref,
)
from ledger.services.wallet import _reason_validate, _staff_validate


def member_lock(*, organisation_id: int, user_id: int) -> Membership | None:
    """Lock the member's Membership row (``SELECT … FOR NO KEY UPDATE``) until the caller's
    transaction ends; None when they are not (or no longer) a member.

    Step 3 of the global lock order (docs/ledger.md): after the jobs app's rows, before the
    ledger's accounts. ``organisation_hold_place`` takes it; so does a pool job's settlement
    (``jobs.billing.job_settle``) before it releases into the organisation's wallet, because a
    group's settlement goes on to place the next task's hold, which needs it: taken after the
    wallet's lock it could deadlock with a submit of the same member.
    """
    return (
        Membership.objects.select_for_update(no_key=True)
        .filter(organisation_id=organisation_id, user_id=user_id)
        .first()
    )


def _membership_lock(organisation_id: int, user_id: int) -> Membership:
    membership = member_lock(organisation_id=organisation_id, user_id=user_id)
    if membership is None:
        raise PermissionDenied(
            f"you are not a member of organisation {organisation_id}: its wallet can't pay",
            code="not_a_member",
            fields={"pool": ["not a member of this organisation"]},
        )
    return membership


def _cap_check(membership: Membership, amount: int, key: str) -> None:
    cap = membership.monthly_cap_micros
    if cap is None or LedgerTransaction.objects.filter(key=key).exists():
        return  # no cap, or a repeat of a hold that went through: the replay answers it
    spent = member_month_spent(
        organisation_id=membership.organisation_id, user_id=membership.user_id
    )
    if spent + amount > cap:
        raise InsufficientCredits(
            f"this hold of {amount} micro-credits would take your spending from organisation "
            f"{membership.organisation_id}'s wallet this month to {spent + amount}, past your "
            f"monthly cap of {cap} ({spent} spent)",
            code="member_cap_exceeded",
            fields={
                "cap_micros": cap,
                "spent_micros": spent,
                "requested_micros": amount,
            },
        )


def organisation_hold_place(
    *, organisation_id: int, user: User, job_id: int, amount_micros: int, key: str
) -> LedgerTransaction:
    """Move ``amount_micros`` from the organisation's wallet into the escrow of ``user``'s pool
    job ``job_id`` (the escrow's user is the renter, its organisation the payer).

    Refuses, writing nothing: ``PermissionDenied`` (``not_a_member``) when ``user`` is not a
    member; ``InsufficientCredits`` ``member_cap_exceeded`` (fields ``cap_micros``,
    ``spent_micros``, ``requested_micros``) when the hold would take the member's spending this
    month past their ``monthly_cap_micros``, ``insufficient_credits`` when the organisation's
    wallet can't cover it (fields ``available_micros``, ``required_micros``);
    ``PermissionDenied`` (``account_restricted``) while a refund of the organisation's
    purchases is not repaid. Locks the member's Membership row, then the accounts in pk order,
    in the caller's transaction; idempotent by ``key``.
    """
    job = _id_validate(job_id, "job_id")
    organisation = _id_validate(organisation_id, "organisation_id")
    amount = amount_validate(amount_micros)
    membership = _membership_lock(organisation, user.pk)
    _cap_check(membership, amount, key)
    wallet = organisation_wallet_ref(organisation)
    escrow = escrow_ref(job, renter_id=user.pk, organisation_id=organisation)

    def legs(locked: Mapping[AccountRef, Account]) -> list[Leg]:
        held = locked[escrow]
        if held.user_id != user.pk or held.organisation_id != organisation:
            raise Conflict(f"job {job} is held by another wallet", code="hold_owner_mismatch")
        # Checked under the organisation wallet's lock, which a refund's take-back also holds.
        if organisation_is_restricted(organisation):
            raise PermissionDenied(
                "this organisation owes credits from a refund or dispute (docs/payments.md)",
                code="account_restricted",
            )
        return [Leg(wallet, -amount), Leg(escrow, amount)]

    try:
        posted = _post(
            kind=TransactionKind.HOLD,
            key=key,
            accounts=[wallet, escrow],
            legs=legs,
            memo=f"hold for job {job} of {user.username}, paid by organisation {organisation}",
            job_id=job,
            metadata={"job_id": job, "organisation_id": organisation, "user_id": user.pk},
        )
    except InsufficientCredits as exc:
        if exc.code != "insufficient_credits":
            raise
        raise InsufficientCredits(
            f"the wallet of organisation {organisation} can't cover this hold: {exc.message}",
            code="insufficient_credits",
            fields={**exc.fields, "wallet": [f"organisation {organisation}"]},
        ) from None
    assert posted is not None
    return posted


def organisation_credit(
    *,
    organisation: Organisation,
    amount_micros: int,
    key: str,
    reason: str,
    staff_user: User,
) -> LedgerTransaction:
    """A staff grant into the organisation's wallet (grants -> organisation_wallet).

    Needs an active staff ``staff_user`` (recorded as ``created_by``). Moves money under row
    locks taken in pk order, in the caller's transaction; idempotent by ``key``.
    """
    amount = amount_validate(amount_micros)
    memo = _reason_validate(reason)
    staff = _staff_validate(staff_user)
    wallet, grants = organisation_wallet_ref(organisation.pk), platform_ref(AccountKind.GRANTS)
    posted = _post(
        kind=TransactionKind.GRANT,
        key=key,
        accounts=[wallet, grants],
        legs=[Leg(grants, -amount), Leg(wallet, amount)],
        memo=memo,
        created_by=staff,
        metadata={"organisation_id": organisation.pk},
    )
    assert posted is not None
    return posted
