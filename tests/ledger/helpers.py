"""Test helpers for the ledger: an independent check of the invariants and state snapshots."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from django.db.models import Count, Sum
from django.db.models.functions import Coalesce

from accounts.models import User
from config.transactions import durable_call
from ledger.models import Account, AccountKind, LedgerTransaction, Posting

P = ParamSpec("P")
T = TypeVar("T")


def entry_point(service: Callable[P, T]) -> Callable[P, T]:
    """``service`` called as an entry point calls it: in a durable transaction of its own (for
    tests outside a test case's transaction: threads, ``transaction=True``)."""

    @functools.wraps(service)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return durable_call(service, *args, **kwargs)

    return call


@dataclass(frozen=True)
class LedgerState:
    """Everything a refused call must leave as it was."""

    balances: dict[int, int]
    accounts: int
    transactions: int
    postings: int


def ledger_state() -> LedgerState:
    return LedgerState(
        balances=dict(Account.objects.values_list("pk", "balance_micros")),
        accounts=Account.objects.count(),
        transactions=LedgerTransaction.objects.count(),
        postings=Posting.objects.count(),
    )


def assert_invariants() -> None:
    """Every transaction balanced, every cached balance = its postings, no forbidden negative."""
    for txn in LedgerTransaction.objects.annotate(
        total=Coalesce(Sum("postings__amount_micros"), 0), lines=Count("postings")
    ):
        assert (txn.total, txn.lines >= 2) == (0, True), f"unbalanced {txn.key}"
    for account in Account.objects.annotate(rebuilt=Coalesce(Sum("postings__amount_micros"), 0)):
        assert account.balance_micros == account.rebuilt, f"{account} cache is off"
        if account.must_not_be_negative:
            assert account.balance_micros >= 0, f"{account} is negative"


def balance(kind: AccountKind, *, user: User | None = None, job_id: int | None = None) -> int:
    """The balance of one account; 0 when it doesn't exist. Platform kinds sum their shards."""
    accounts = Account.objects.filter(kind=kind)
    if user is not None:
        accounts = accounts.filter(user=user)
    if job_id is not None:
        accounts = accounts.filter(job_id=job_id)
    return int(accounts.aggregate(total=Coalesce(Sum("balance_micros"), 0))["total"])


def postings_of(txn: LedgerTransaction) -> list[tuple[str, int | None, int]]:
    """(account kind, owner user id or job id, amount) of each posting, in insertion order."""
    return [
        (p.account.kind, p.account.job_id or p.account.user_id, p.amount_micros)
        for p in txn.postings.select_related("account").order_by("pk")
    ]


def assert_kept_sums() -> int:
    """Reconciliation's kept sums are exactly the postings up to its checkpoint, per account
    (computed here another way); returns the checkpoint's posting id."""
    from ledger.models import LedgerCheckpoint, ReconciledAccount, TransactionKind

    checkpoint = LedgerCheckpoint.objects.get(name="reconcile")
    expected: dict[int, tuple[int | None, int, int, int, int]] = {}
    postings = Posting.objects.filter(pk__lte=checkpoint.posting_id).select_related(
        "transaction", "account"
    )
    for posting in postings:
        job, total, matured, payouts, charged = expected.get(
            posting.account_id, (posting.account.job_id, 0, 0, 0, 0)
        )
        kind, amount = posting.transaction.kind, posting.amount_micros
        expected[posting.account_id] = (
            job,
            total + amount,
            matured + (amount if kind == TransactionKind.MATURITY else 0),
            payouts
            + (amount if kind in (TransactionKind.PAYOUT, TransactionKind.PAYOUT_REVERSAL) else 0),
            charged
            + (amount if kind in (TransactionKind.CAPTURE, TransactionKind.REVERSAL) else 0),
        )
    kept = {
        row.account_id: (
            row.job_id,
            row.postings_micros,
            row.matured_micros,
            row.payouts_micros,
            row.charged_micros,
        )
        for row in ReconciledAccount.objects.all()
    }
    assert kept == expected
    return checkpoint.posting_id


def assert_maturity_states() -> None:
    """Each maturity state agrees with its waiting rows: their sum, how many are jobs not
    settled yet, when the earliest of the others is due."""
    from ledger.models import MaturityState, MaturityWaiting

    for state in MaturityState.objects.all():
        rows = list(MaturityWaiting.objects.filter(account_id=state.account_id))
        due = [row.due_at for row in rows if row.due_at is not None]
        assert (state.waiting_micros, state.unsettled_jobs, state.next_due_at) == (
            sum(row.amount_micros for row in rows),
            len(rows) - len(due),
            min(due, default=None),
        ), state
