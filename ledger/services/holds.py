"""Job money: the hold (escrow), usage charges against it, its release, and reversals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.db.models import Max, Sum

from accounts.models import User
from config.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from ledger.models import Account, AccountKind, LedgerTransaction, Posting, TransactionKind
from ledger.money import amount_validate, capture_validate
from ledger.selectors import user_is_restricted
from ledger.services.posting import (
    AccountRef,
    Leg,
    LegsPlan,
    Replay,
    _post,
    earnings_pending_ref,
    escrow_ref,
    organisation_wallet_ref,
    revenue_ref,
    wallet_ref,
)


def _id_validate(value: object, field: str, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValidationFailed(
            f"{field} must be an integer of at least {minimum}",
            code="invalid",
            fields={field: ["invalid"]},
        )
    return value


def hold_place(*, user: User, job_id: int, amount_micros: int, key: str) -> LedgerTransaction:
    """Move ``amount_micros`` from ``user``'s wallet into the escrow of ``job_id``.

    Creates the job's escrow on first use; a further hold on the same job adds to it. Raises
    ``InsufficientCredits`` (402, code ``insufficient_credits``) when the wallet can't cover it,
    ``Conflict`` when the job's escrow belongs to someone else or the key was used for other
    amounts, ``PermissionDenied`` (``account_restricted``) while the user owes credits from a
    refund or lost dispute (``AccountRestriction``). Moves money under row locks taken in pk
    order; idempotent by ``key``.
    """
    job = _id_validate(job_id, "job_id")
    amount = amount_validate(amount_micros)
    wallet, escrow = wallet_ref(user.pk), escrow_ref(job, renter_id=user.pk)

    def legs(locked: Mapping[AccountRef, Account]) -> list[Leg]:
        if locked[escrow].user_id != user.pk or locked[escrow].organisation_id is not None:
            raise Conflict(f"job {job} is held by another user", code="hold_owner_mismatch")
        # Checked under the wallet lock, which a refund's take-back also holds: no race.
        if user_is_restricted(user.pk):
            raise PermissionDenied(
                "this account owes credits from a refund or dispute (docs/payments.md)",
                code="account_restricted",
            )
        return [Leg(wallet, -amount), Leg(escrow, amount)]

    posted = _post(
        kind=TransactionKind.HOLD,
        key=key,
        accounts=[wallet, escrow],
        legs=legs,
        memo=f"hold for job {job}",
        job_id=job,
        metadata={"job_id": job},
    )
    assert posted is not None
    return posted


def hold_capture(
    *,
    job_id: int,
    attempt: int,
    host_owner: User | int,
    gross_micros: int,
    fee_micros: int,
    key: str,
    host_id: int | None = None,
) -> LedgerTransaction:
    """Charge ``gross_micros`` from the job's escrow: the host owner's pending earnings get
    ``gross - fee``, platform revenue (the job's shard) gets ``fee``.

    The hot path of the marketplace: four statements when the accounts exist. ``host_owner`` is
    a user or a user id. ``host_id`` is the host the attempt runs on: metering passes it so that
    billing reports can group charges by host (optional only for callers that predate it; a
    capture without it is reported under "no host"). A repeat of the key with another host is a
    ``Conflict``. Raises ``InsufficientCredits`` (code ``hold_exceeded``) when the charge
    exceeds what is left in the escrow, ``NotFound`` (``hold_not_found``) when the job has no
    hold. Moves money under row locks taken in pk order; idempotent by ``key``.
    """
    job = _id_validate(job_id, "job_id")
    attempt_number = _id_validate(attempt, "attempt")
    owner_id = host_owner if isinstance(host_owner, int) else host_owner.pk
    host = None if host_id is None else _id_validate(host_id, "host_id")
    split = capture_validate(gross_micros, fee_micros)
    escrow, pending, revenue = escrow_ref(job), earnings_pending_ref(owner_id), revenue_ref(job)
    posted = _post(
        kind=TransactionKind.CAPTURE,
        key=key,
        accounts=[escrow, pending, revenue],
        legs=[
            Leg(escrow, -split.gross_micros),
            Leg(pending, split.net_micros),
            Leg(revenue, split.fee_micros),
        ],
        job_id=job,
        attempt=attempt_number,
        host_id=host,
        metadata={
            "job_id": job,
            "attempt": attempt_number,
            "host_owner_id": owner_id,
            "gross_micros": split.gross_micros,
            "fee_micros": split.fee_micros,
            **({} if host is None else {"host_id": host}),
        },
    )
    assert posted is not None
    return posted


def _escrow_payer(job_id: int) -> AccountRef:
    """The wallet that paid the job's hold: the organisation's for a pool job, else the
    renter's."""
    payer = (
        Account.objects.filter(kind=AccountKind.ESCROW, job_id=job_id)
        .values_list("user_id", "organisation_id")
        .first()
    )
    if payer is None:
        raise NotFound(f"job {job_id} has no hold", code="hold_not_found")
    renter_id, organisation_id = payer
    return (
        wallet_ref(renter_id)
        if organisation_id is None
        else organisation_wallet_ref(organisation_id)
    )


def hold_release(*, job_id: int, key: str) -> LedgerTransaction | None:
    """Return what is left in the job's escrow to the wallet that paid it: the renter's, or
    for a pool job the organisation's (``organisation_hold_place``).

    Returns None when the escrow is already empty (and ``key`` unused). Raises ``NotFound``
    (``hold_not_found``) when the job never had a hold. Moves money under row locks taken in pk
    order; idempotent by ``key`` (a repeat returns the first release).
    """
    job = _id_validate(job_id, "job_id")
    escrow = escrow_ref(job)
    wallet = _escrow_payer(job)

    def legs(locked: Mapping[AccountRef, Account]) -> list[Leg]:
        remainder = locked[escrow].balance_micros
        return [Leg(escrow, -remainder), Leg(wallet, remainder)]

    return _post(
        kind=TransactionKind.RELEASE,
        key=key,
        accounts=[escrow, wallet],
        legs=legs,
        replay=Replay.SAME_CAUSE,
        memo=f"hold of job {job} released",
        job_id=job,
        metadata={"job_id": job},
    )


@dataclass(frozen=True)
class _Unreversed:
    """The captures of one attempt that no reversal covered yet, summed per account."""

    through_capture_id: int
    by_account: dict[int, tuple[Account, int]]


def _unreversed_captures(job_id: int, attempt: int) -> _Unreversed:
    """Each reversal records the last capture it covered (``through_capture_id``); a capture
    claims its id while it holds the escrow's lock, as does a reversal's read, so every capture
    a reversal did not see has a higher id than the ones it covered."""
    attempt_txns = LedgerTransaction.objects.filter(job_id=job_id, attempt=attempt)
    last_reversal = (
        attempt_txns.filter(kind=TransactionKind.REVERSAL)
        .order_by("-pk")
        .values_list("metadata", flat=True)
        .first()
    )
    watermark = int(last_reversal["through_capture_id"]) if last_reversal else 0
    captures = attempt_txns.filter(kind=TransactionKind.CAPTURE, pk__gt=watermark)
    rows = (
        Posting.objects.filter(transaction__in=captures)
        .values("account_id")
        .annotate(total=Sum("amount_micros"), through=Max("transaction_id"))
        .order_by()
    )
    totals = {row["account_id"]: int(row["total"]) for row in rows}
    through = max((int(row["through"]) for row in rows), default=watermark)
    accounts = Account.objects.in_bulk(list(totals))
    by_account = {pk: (accounts[pk], total) for pk, total in totals.items() if total}
    return _Unreversed(through_capture_id=through, by_account=by_account)


def _attempt_host_id(job_id: int, attempt: int) -> int | None:
    """The host an attempt's charges were captured on (one attempt runs on one host), so that a
    reversal is reported against the host whose charges it undoes."""
    return (
        LedgerTransaction.objects.filter(
            job_id=job_id, attempt=attempt, kind=TransactionKind.CAPTURE, host_id__isnull=False
        )
        .values_list("host_id", flat=True)
        .first()
    )


def _reverse_refs(job_id: int, unreversed: _Unreversed) -> set[AccountRef]:
    refs = {escrow_ref(job_id)}
    if unreversed.by_account:
        refs.add(revenue_ref(job_id))
    for account, _total in unreversed.by_account.values():
        refs.add(AccountRef.of(account))
    return refs


def _reverse_plan(job_id: int, attempt: int, metadata: dict[str, int]) -> LegsPlan:
    def legs(locked: Mapping[AccountRef, Account]) -> list[Leg]:
        unreversed = _unreversed_captures(job_id, attempt)
        metadata["through_capture_id"] = unreversed.through_capture_id
        planned: list[Leg] = []
        for account, total in unreversed.by_account.values():
            ref = AccountRef.of(account)
            if ref not in locked:
                raise Conflict("the ledger changed while reversing; retry", code="retry")
            # The host's share comes back from its pending earnings only: the earnings of a job
            # mature only after it settled (earnings.py), so an attempt that can still be lost
            # has all of them pending; were they not, the overdraft check refuses the reversal
            # (insufficient_earnings) rather than book it to platform_loss.
            planned.append(Leg(ref, -total))
        # What the reversal gives back, for receipts: the gross into the escrow, the fee
        # taken out of revenue.
        metadata["gross_micros"] = sum(
            amount for ref, amount in planned if ref.kind == AccountKind.ESCROW
        )
        metadata["fee_micros"] = -sum(
            amount for ref, amount in planned if ref.kind == AccountKind.REVENUE
        )
        return planned

    return legs


def charges_reverse(*, job_id: int, attempt: int, key: str) -> LedgerTransaction | None:
    """Undo every charge of one attempt (a lost attempt: the renter pays nothing for it).

    The captured gross goes back into the job's escrow (``hold_release`` returns it to the
    wallet later); the fee leaves revenue; the host's share leaves their pending earnings —
    only those: a job's earnings mature only once it settled, so a reversal never touches
    available earnings, payouts or platform_loss (one that would is refused,
    ``insufficient_earnings``). Reverses only
    what is not reversed yet, so a later call reverses charges that arrived since. Returns None
    when there is nothing to reverse; ``is_replay`` is set on a repeat. The transaction's
    metadata has ``gross_micros`` and ``fee_micros``, so the caller records the reversal in the
    same (its own) transaction. Moves money under row locks taken in pk order; idempotent by
    ``key``.
    """
    job = _id_validate(job_id, "job_id")
    attempt_number = _id_validate(attempt, "attempt")
    refs = _reverse_refs(job, _unreversed_captures(job, attempt_number))
    host = _attempt_host_id(job, attempt_number)
    metadata = {"job_id": job, "attempt": attempt_number}

    return _post(
        kind=TransactionKind.REVERSAL,
        key=key,
        accounts=refs,
        legs=_reverse_plan(job, attempt_number, metadata),
        replay=Replay.SAME_CAUSE,
        memo=f"charges of job {job} attempt {attempt_number} reversed",
        job_id=job,
        attempt=attempt_number,
        host_id=host,
        metadata=metadata,
    )
