"""The one writer of the ledger: ``_post`` and the account locking it relies on.

Every service in ``ledger.services`` calls ``_post`` exactly once, in the transaction its caller
opened (the entry point: ``config.transactions.durable``); no ledger service opens one. ``_post``:

1. locks every account the transaction may touch, in pk order, through ``_accounts_lock``
   (creating missing accounts where that is allowed);
2. works out the legs (for derived amounts such as "the escrow's remainder", from the balances it
   just locked) and checks that they balance;
3. refuses to overdraw an account that must not go negative (``InsufficientCredits``), unless
   the key was posted before: then that first transaction is the answer;
4. writes the transaction, claiming its idempotency key with ``INSERT … ON CONFLICT (key) DO
   NOTHING``, with its postings and the new balances; when the key was taken it returns the first
   transaction if it matches, else raises ``Conflict``.

The hot path (a usage charge whose accounts exist) is two statements on PostgreSQL: the locking
SELECT and one write (see ``ledger.services.sql``).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import User
from config.errors import Conflict, InsufficientCredits, NotFound, ValidationFailed
from ledger.models import (
    NON_NEGATIVE_KINDS,
    ORGANISATION_KINDS,
    PLATFORM_KINDS,
    USER_KINDS,
    Account,
    AccountKind,
    LedgerTransaction,
    Posting,
    TransactionKind,
)
from ledger.services import sql

KEY_MAX_LENGTH = 200


@dataclass(frozen=True, slots=True)
class AccountRef:
    """Names an account without loading it: its kind and its owner number.

    The owner number is the user id for per-user kinds, the organisation id for an
    organisation's wallet, the job id for an escrow and the shard for platform accounts.
    ``escrow_user_id`` (the renter) is only needed to create an escrow; an escrow ref without it
    refers to an existing hold and never creates one. ``escrow_organisation_id`` is the
    organisation that pays a pool job's hold (only when creating it).
    """

    kind: str
    owner: int
    escrow_user_id: int | None = field(default=None, compare=False)
    escrow_organisation_id: int | None = field(default=None, compare=False)

    @classmethod
    def of(cls, account: Account) -> AccountRef:
        if account.kind in USER_KINDS:
            assert account.user_id is not None
            return cls(account.kind, account.user_id)
        if account.kind in ORGANISATION_KINDS:
            assert account.organisation_id is not None
            return cls(account.kind, account.organisation_id)
        if account.kind == AccountKind.ESCROW:
            assert account.job_id is not None
            return cls(account.kind, account.job_id)
        return cls(account.kind, account.shard)

    def new_account(self) -> Account:
        kind = AccountKind(self.kind)
        account = Account(kind=kind, must_not_be_negative=kind in NON_NEGATIVE_KINDS)
        if kind in USER_KINDS:
            account.user_id = self.owner
        elif kind in ORGANISATION_KINDS:
            account.organisation_id = self.owner
        elif kind == AccountKind.ESCROW:
            if self.escrow_user_id is None:
                raise NotFound(f"job {self.owner} has no hold", code="hold_not_found")
            account.job_id = self.owner
            account.user_id = self.escrow_user_id
            account.organisation_id = self.escrow_organisation_id
        else:
            account.shard = self.owner
        return account


def wallet_ref(user_id: int) -> AccountRef:
    return AccountRef(AccountKind.WALLET, user_id)


def organisation_wallet_ref(organisation_id: int) -> AccountRef:
    return AccountRef(AccountKind.ORGANISATION_WALLET, organisation_id)


def escrow_ref(
    job_id: int, *, renter_id: int | None = None, organisation_id: int | None = None
) -> AccountRef:
    """The hold of a job; with ``renter_id`` it may be created (hold_place), else it must exist.
    ``organisation_id``: the organisation whose wallet pays it (a pool job's hold)."""
    return AccountRef(
        AccountKind.ESCROW, job_id, escrow_user_id=renter_id, escrow_organisation_id=organisation_id
    )


def earnings_pending_ref(user_id: int) -> AccountRef:
    return AccountRef(AccountKind.EARNINGS_PENDING, user_id)


def earnings_available_ref(user_id: int) -> AccountRef:
    return AccountRef(AccountKind.EARNINGS_AVAILABLE, user_id)


def platform_ref(kind: AccountKind, shard: int = 0) -> AccountRef:
    assert kind in PLATFORM_KINDS
    return AccountRef(kind, shard)


def revenue_ref(job_id: int) -> AccountRef:
    """The revenue shard a job's fees go to.

    One revenue row locked by every charge would serialise all charges in the marketplace; with
    the fees spread over ``LEDGER_REVENUE_SHARDS`` rows by job, concurrent charges of different
    jobs rarely meet. Platform revenue is the sum of the shards.
    """
    return platform_ref(AccountKind.REVENUE, job_id % settings.LEDGER_REVENUE_SHARDS)


# --- Locking ----------------------------------------------------------------------------------


def _accounts_select_locked(refs: Collection[AccountRef]) -> dict[AccountRef, Account]:
    ordered = sorted(set(refs), key=lambda ref: (ref.kind, ref.owner))
    accounts = sql.accounts_select_locked([(ref.kind, ref.owner) for ref in ordered])
    return {AccountRef.of(account): account for account in accounts}


def _accounts_lock(
    refs: Collection[AccountRef],
    *,
    missing_holds_ok: bool = False,
    found: dict[AccountRef, Account] | None = None,
) -> dict[AccountRef, Account]:
    """Lock the accounts named by ``refs`` in pk order and return them by ref.

    This is the only place that locks ledger accounts, so every money transaction takes its row
    locks in the same (pk) order and two of them can't deadlock. Missing accounts are created
    (``INSERT … ON CONFLICT DO NOTHING``, so racing creators agree on one row) and locked by a
    second SELECT, which may come after rows with a higher pk. That happens once per user, job
    or shard; if two transactions create accounts at the same moment they can, rarely, deadlock,
    and PostgreSQL aborts one of them, which the entry point's ``durable`` reruns.

    ``found`` is what the caller already locked by the same SELECT. An escrow ref without a
    renter names a hold that must exist: it raises ``NotFound`` when
    missing, or with ``missing_holds_ok`` (a batch, where one job's missing hold must not refuse
    the others) is left out of the result.
    """
    assert connection.in_atomic_block, "ledger accounts are locked inside a transaction"
    if found is None:
        found = _accounts_select_locked(refs)
    missing = sorted(
        (
            ref
            for ref in set(refs)
            if ref not in found
            and not (
                missing_holds_ok and ref.kind == AccountKind.ESCROW and ref.escrow_user_id is None
            )
        ),
        key=lambda ref: (ref.kind, ref.owner),
    )
    if missing:
        Account.objects.bulk_create([ref.new_account() for ref in missing], ignore_conflicts=True)
        found = _accounts_select_locked(refs)
    return found


# --- Idempotency ------------------------------------------------------------------------------


class Replay(enum.Enum):
    """What must match when a key is posted again (else ``Conflict``)."""

    # The caller names the amounts: the same kind and exactly the same postings.
    SAME_AMOUNTS = "same_amounts"
    # The amounts derive from the ledger (a remainder, a reversal): the same kind, job and attempt.
    SAME_CAUSE = "same_cause"


def _key_validate(key: object) -> str:
    if not isinstance(key, str) or not key.strip() or len(key) > KEY_MAX_LENGTH:
        raise ValidationFailed(
            f"key must be a non-empty string of at most {KEY_MAX_LENGTH} characters",
            code="invalid_key",
            fields={"key": ["invalid"]},
        )
    return key


@dataclass(frozen=True)
class _Earlier:
    """A transaction already written under a key: what a repeat of the key must match."""

    txn_id: int
    kind: str
    job_id: int | None
    attempt: int | None
    host_id: int | None
    postings: Counter[tuple[int, int]]


def _posted_before(keys: Collection[str]) -> dict[str, _Earlier]:
    """The transactions already written under ``keys``, with their postings (one query)."""
    found: dict[str, _Earlier] = {}
    rows = Posting.objects.filter(transaction__key__in=list(keys)).values_list(
        "transaction__key",
        "transaction_id",
        "transaction__kind",
        "transaction__job_id",
        "transaction__attempt",
        "transaction__host_id",
        "account_id",
        "amount_micros",
    )
    for key, txn_id, kind, job_id, attempt, host_id, account_id, amount in rows:
        earlier = found.setdefault(key, _Earlier(txn_id, kind, job_id, attempt, host_id, Counter()))
        earlier.postings[(account_id, amount)] += 1
    return found


def _is_replay(
    first: _Earlier, txn: LedgerTransaction, legs: Sequence[tuple[int, int]], replay: Replay
) -> bool:
    """The one replay check, of single posts and batches alike: does this repeat of a key
    match the first transaction posted with it?"""
    if first.kind != txn.kind:
        return False
    if replay is Replay.SAME_AMOUNTS:
        return first.postings == Counter(legs) and first.host_id == txn.host_id
    return (first.job_id, first.attempt) == (txn.job_id, txn.attempt)


def _key_reused(key: str) -> Conflict:
    return Conflict(
        f"the key {key!r} was already used for another transaction",
        code="transaction_key_reused",
        fields={"key": ["already used with other amounts"]},
    )


def _replayed(
    txn: LedgerTransaction,
    legs: Sequence[tuple[int, int]],
    replay: Replay,
) -> LedgerTransaction:
    """The first transaction posted with ``txn.key``, if this repeat matches it."""
    first = _posted_before([txn.key])[txn.key]
    if not _is_replay(first, txn, legs, replay):
        raise _key_reused(txn.key)
    answer = LedgerTransaction.objects.get(pk=first.txn_id)
    answer.is_replay = True
    return answer


# --- Posting ----------------------------------------------------------------------------------


class Leg(NamedTuple):
    account: AccountRef
    amount_micros: int


LegsPlan = Callable[[Mapping[AccountRef, Account]], Sequence[Leg]]

_SHORTFALL_CODES: dict[str, str] = {
    AccountKind.WALLET: "insufficient_credits",
    AccountKind.ORGANISATION_WALLET: "insufficient_credits",
    AccountKind.ESCROW: "hold_exceeded",
    AccountKind.EARNINGS_PENDING: "insufficient_earnings",
    AccountKind.EARNINGS_AVAILABLE: "insufficient_earnings",
}


def _shortfall(account: Account, needed: int, balance: int) -> InsufficientCredits:
    code = _SHORTFALL_CODES.get(account.kind, "insufficient_funds")
    if account.kind == AccountKind.WALLET:
        what = "not enough credits"
    elif account.kind == AccountKind.ORGANISATION_WALLET:
        what = f"not enough credits in the wallet of organisation {account.organisation_id}"
    elif account.kind == AccountKind.ESCROW:
        what = f"the amount exceeds what is left of the hold for job {account.job_id}"
    else:
        what = f"not enough funds in {account.get_kind_display().lower()}"
    return InsufficientCredits(
        f"{what}: {balance} micro-credits left, {needed} needed",
        code=code,
        fields={
            "available_micros": [f"{balance} micro-credits left"],
            "required_micros": [f"{needed} needed"],
        },
    )


def _legs_check_balanced(legs: Sequence[Leg]) -> None:
    if len(legs) < 2 or sum(leg.amount_micros for leg in legs) != 0:
        raise ValidationFailed(
            "a ledger transaction needs at least two postings that sum to zero",
            code="unbalanced_transaction",
        )


def _deltas(locked: Mapping[AccountRef, Account], legs: Sequence[Leg]) -> dict[int, int]:
    """Net change per account id."""
    deltas: dict[int, int] = {}
    for ref, amount in legs:
        account = locked[ref]
        deltas[account.pk] = deltas.get(account.pk, 0) + amount
    return deltas


def _overdraft(
    locked: Mapping[AccountRef, Account],
    deltas: Mapping[int, int],
    balances: Mapping[int, int] | None = None,
) -> InsufficientCredits | None:
    """The refusal when an account that must not go negative would (from its locked balance,
    or in a batch from ``balances``: what the batch's earlier transactions left)."""
    by_pk = {account.pk: account for account in locked.values()}
    for pk, delta in deltas.items():
        account = by_pk[pk]
        balance = account.balance_micros if balances is None else balances[pk]
        if delta < 0 and account.must_not_be_negative and balance + delta < 0:
            return _shortfall(account, -delta, balance)
    return None


def _provisional(refs: Collection[AccountRef]) -> dict[AccountRef, Account]:
    """Unsaved accounts for ``refs`` (negative ids, never written), to decide a refusal on."""
    accounts = {}
    for number, ref in enumerate(sorted(refs, key=lambda ref: (ref.kind, ref.owner)), start=1):
        account = ref.new_account()
        account.pk = -number
        accounts[ref] = account
    return accounts


def _refusal_check(
    key: str, accounts: Mapping[AccountRef, Account], legs: Sequence[Leg] | LegsPlan
) -> None:
    """Raise the refusal ``_post`` would give with these accounts, unless the key was posted."""
    planned = [leg for leg in (legs(accounts) if callable(legs) else legs) if leg.amount_micros]
    if not planned:
        return
    _legs_check_balanced(planned)
    overdraft = _overdraft(accounts, _deltas(accounts, planned))
    if overdraft is not None and not LedgerTransaction.objects.filter(key=key).exists():
        raise overdraft


def _post(
    *,
    kind: TransactionKind,
    key: str,
    accounts: Collection[AccountRef],
    legs: Sequence[Leg] | LegsPlan,
    replay: Replay = Replay.SAME_AMOUNTS,
    memo: str = "",
    job_id: int | None = None,
    attempt: int | None = None,
    host_id: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    created_by: User | None = None,
) -> LedgerTransaction | None:
    """Post one balanced transaction; the only code that writes postings or balances.

    Must run inside the caller's transaction (the entry point's ``durable``). Locks ``accounts``
    in pk order, then computes ``legs``: a list, or a function of the locked accounts for amounts
    that derive from balances (``metadata`` is read after it ran, so a plan may add to it).

    Returns the new transaction; the first one when ``key`` was posted before and matches
    (``replay``); None when there is nothing to post and the key is unused.
    Raises ``Conflict`` (key reused for something else), ``InsufficientCredits`` (an account that
    must not go negative would) and ``NotFound`` (a hold that doesn't exist).
    """
    assert connection.in_atomic_block, "_post runs inside the caller's durable transaction"
    key = _key_validate(key)
    found = _accounts_select_locked(accounts)
    if len(found) < len(set(accounts)):
        # Decide first with the missing accounts as they would be created (empty), so that a
        # refusal creates none: it must leave nothing in the caller's transaction.
        _refusal_check(key, {**found, **_provisional(set(accounts) - set(found))}, legs)
    locked = _accounts_lock(accounts, found=found)
    planned = legs(locked) if callable(legs) else legs
    planned = [leg for leg in planned if leg.amount_micros != 0]
    txn = LedgerTransaction(
        key=key,
        kind=kind,
        memo=memo[:500],
        created_at=timezone.now(),
        created_by=created_by,
        job_id=job_id,
        attempt=attempt,
        host_id=host_id,
        metadata=dict(metadata or {}),
    )
    by_id = [(locked[ref].pk, amount) for ref, amount in planned]
    if not planned:
        first = LedgerTransaction.objects.filter(key=txn.key).first()
        return None if first is None else _replayed(txn, by_id, replay)
    _legs_check_balanced(planned)
    deltas = _deltas(locked, planned)
    overdraft = _overdraft(locked, deltas)
    if overdraft is not None:
        # A repeat of a transaction that went through finds the money gone: it is answered
        # with the first transaction, not refused.
        if LedgerTransaction.objects.filter(key=txn.key).exists():
            return _replayed(txn, by_id, replay)
        raise overdraft
    txn_id = sql.transaction_write(txn, by_id, deltas)
    if txn_id is None:
        return _replayed(txn, by_id, replay)
    txn.pk = txn_id
    txn._state.adding = False
    txn._state.db = connection.alias
    return txn


# --- Batches ----------------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    POSTED = "posted"  # written by this call
    REPLAYED = "replayed"  # the key was posted before and this repeat matches: nothing written
    CONFLICT = "conflict"  # the key was posted before with something else: nothing written
    REFUSED = "refused"  # an overdraft or a missing hold: nothing written


@dataclass(frozen=True)
class Planned:
    """One transaction of a batch: written as ``_post`` would write it, with fixed legs."""

    txn: LedgerTransaction
    legs: Sequence[Leg]
    replay: Replay = Replay.SAME_AMOUNTS


@dataclass(frozen=True)
class Posted:
    outcome: Outcome
    # The new transaction, or for a replay or a conflict the first one.
    transaction_id: int | None = None
    # Why it was not posted: an overdraft's code, hold_not_found, transaction_key_reused.
    code: str = ""


def _repeat(first: _Earlier, planned: Planned, by_id: Sequence[tuple[int, int]]) -> Posted:
    if _is_replay(first, planned.txn, by_id, planned.replay):
        return Posted(Outcome.REPLAYED, first.txn_id)
    return Posted(Outcome.CONFLICT, first.txn_id, code="transaction_key_reused")


def _post_many(batch: Sequence[Planned]) -> list[Posted]:
    """Post many transactions at once, each decided on its own; one result each, in order.

    The same rules as ``_post`` with the same checks (``_is_replay``, ``_overdraft``): every
    account of the batch locked by one SELECT in pk order, every key looked up by one query,
    the transactions taken in order against the balances the earlier ones leave, and all those
    that go through written by one statement (PostgreSQL). A transaction whose key was posted
    before is a replay or a conflict, one that would overdraw an account or names a hold that
    does not exist is refused; none of these stops the others. Keys must be distinct. Must run
    inside the caller's transaction.
    """
    assert connection.in_atomic_block, "_post_many runs inside the caller's transaction"
    locked = _accounts_lock(
        {leg.account for planned in batch for leg in planned.legs}, missing_holds_ok=True
    )
    earlier = _posted_before([planned.txn.key for planned in batch])
    left = {account.pk: account.balance_micros for account in locked.values()}
    results: list[Posted | None] = []
    writing: list[tuple[int, Planned, list[tuple[int, int]]]] = []
    for index, planned in enumerate(batch):
        legs = [leg for leg in planned.legs if leg.amount_micros]
        by_id = [(locked[ref].pk, amount) for ref, amount in legs if ref in locked]
        if planned.txn.key in earlier:
            results.append(_repeat(earlier[planned.txn.key], planned, by_id))
            continue
        if len(by_id) < len(legs):
            results.append(Posted(Outcome.REFUSED, code="hold_not_found"))
            continue
        _legs_check_balanced(legs)
        deltas = _deltas(locked, legs)
        overdraft = _overdraft({ref: locked[ref] for ref, _amount in legs}, deltas, balances=left)
        if overdraft is not None:
            results.append(Posted(Outcome.REFUSED, code=overdraft.code))
            continue
        for pk, delta in deltas.items():
            left[pk] += delta
        results.append(None)
        writing.append((index, planned, by_id))
    ids = sql.transactions_write_many([(planned.txn, by_id) for _i, planned, by_id in writing])
    # A key missing from ``ids`` was written by a concurrent transaction since we looked (it
    # committed while we waited for a lock): a replay or a conflict like any other repeat.
    raced = _posted_before([p.txn.key for _i, p, _b in writing if p.txn.key not in ids])
    for index, planned, by_id in writing:
        key = planned.txn.key
        results[index] = (
            Posted(Outcome.POSTED, ids[key]) if key in ids else _repeat(raced[key], planned, by_id)
        )
    return [result for result in results if result is not None]
