"""Reconciliation: rebuild every balance from the postings and report each broken invariant.

It only reads the ledger (and records a ``ReconciliationRun``): a problem is reported for a
person to look at, never "fixed" by rewriting balances. Each check is one SQL statement, so it
sees one consistent snapshot even while charges keep committing.

The ledger knows nothing about jobs. The two job invariants (a finished job's escrow is empty;
a job's charges stay within its cap) need facts only the jobs app has: it provides them through
a ``JobFactsProvider`` — passed in, or the one the jobs app registered in ``ledger.providers``.
Without one those two checks are skipped and the run says so in ``checks``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from ledger.models import (
    Account,
    AccountKind,
    LedgerTransaction,
    Posting,
    ReconciliationRun,
    TransactionKind,
)
from ledger.providers import providers

# Invariant names (stable: reports and alerts use them) and what each one means.
INVARIANTS: dict[str, str] = {
    "transaction_balanced": "every transaction has at least two postings and they sum to zero",
    "balance_matches_postings": "every cached balance equals the sum of its account's postings",
    "no_forbidden_negative": "no account that must not go negative is negative",
    "payouts_within_matured": "no owner was paid out (net of failed payouts) more than matured",
    "platform_loss_paths": "platform_loss moves only through purchase repayments and refunds",
    "finished_job_escrow_empty": "the escrow of a finished job is zero",
    "charges_within_cap": "the charges of a job never exceed its cost cap",
    "job_cost_matches_charges": "a settled job's recorded cost equals its charges in the ledger",
}
JOB_CHECKS = ("finished_job_escrow_empty", "charges_within_cap", "job_cost_matches_charges")
# At most this many problems are listed per check (and stored on a run).
PROBLEMS_KEPT = 1000


@dataclass(frozen=True)
class JobFact:
    """What the jobs app knows about one job: is it finished, and its cost cap."""

    is_finished: bool
    cap_micros: int | None = None
    # What the jobs app recorded as the job's cost (captures net of reversals), for jobs whose
    # charges can no longer change (settled); None skips the comparison.
    charged_micros: int | None = None
    # When the job settled (its attempts over, its charges final); None while it is not. The
    # earnings of a job mature only a dispute window after this (ledger.services.earnings).
    settled_at: datetime | None = None


# Given job ids, return the facts of those it knows (missing ids are simply not checked).
JobFactsProvider = Callable[[frozenset[int]], Mapping[int, JobFact]]


@dataclass(frozen=True)
class Problem:
    invariant: str
    message: str
    account_id: int | None = None
    transaction_id: int | None = None
    job_id: int | None = None
    expected_micros: int | None = None
    actual_micros: int | None = None


@dataclass
class ReconciliationReport:
    run_id: int
    started_at: datetime
    finished_at: datetime
    checks: list[str]
    accounts_checked: int
    transactions_checked: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        return not self.problems


def _unbalanced_transactions() -> list[Problem]:
    rows = (
        LedgerTransaction.objects.annotate(
            total=Coalesce(Sum("postings__amount_micros"), 0), lines=Count("postings")
        )
        .filter(~Q(total=0) | Q(lines__lt=2))
        .order_by("pk")
        .values_list("pk", "key", "total", "lines")[:PROBLEMS_KEPT]
    )
    return [
        Problem(
            invariant="transaction_balanced",
            message=f"transaction {key!r} has {lines} postings summing to {total}",
            transaction_id=pk,
            expected_micros=0,
            actual_micros=total,
        )
        for pk, key, total, lines in rows
    ]


def _balance_mismatches() -> list[Problem]:
    rows = (
        Account.objects.annotate(rebuilt=Coalesce(Sum("postings__amount_micros"), 0))
        .exclude(balance_micros=F("rebuilt"))
        .order_by("pk")[:PROBLEMS_KEPT]
    )
    return [
        Problem(
            invariant="balance_matches_postings",
            message=(
                f"{account}: cached {account.balance_micros}, postings sum to {account.rebuilt}"
            ),
            account_id=account.pk,
            expected_micros=account.rebuilt,
            actual_micros=account.balance_micros,
        )
        for account in rows
    ]


def _forbidden_negatives() -> list[Problem]:
    rows = (
        Account.objects.filter(must_not_be_negative=True)
        .annotate(rebuilt=Coalesce(Sum("postings__amount_micros"), 0))
        .filter(Q(balance_micros__lt=0) | Q(rebuilt__lt=0))
        .order_by("pk")[:PROBLEMS_KEPT]
    )
    return [
        Problem(
            invariant="no_forbidden_negative",
            message=f"{account} is negative: {min(account.balance_micros, account.rebuilt)}",
            account_id=account.pk,
            expected_micros=0,
            actual_micros=min(account.balance_micros, account.rebuilt),
        )
        for account in rows
    ]


# The only kinds of transaction that may post to platform_loss: a refund or lost dispute that
# the wallet could not cover, and the repayment of such a debt out of a later purchase
# (ledger/payments/money.py). A reversal never does (ledger.services.holds.charges_reverse).
PLATFORM_LOSS_KINDS = (TransactionKind.REFUND, TransactionKind.PURCHASE)


def _platform_loss_outside_paths() -> list[Problem]:
    rows = (
        Posting.objects.filter(account__kind=AccountKind.PLATFORM_LOSS)
        .exclude(transaction__kind__in=PLATFORM_LOSS_KINDS)
        .order_by("pk")
        .values_list("transaction_id", "transaction__key", "transaction__kind", "amount_micros")[
            :PROBLEMS_KEPT
        ]
    )
    return [
        Problem(
            invariant="platform_loss_paths",
            message=f"transaction {key!r} ({kind}) moved platform_loss by {amount}",
            transaction_id=txn_id,
            expected_micros=0,
            actual_micros=amount,
        )
        for txn_id, key, kind, amount in rows
    ]


def _payouts_over_matured() -> list[Problem]:
    """Per owner: what left earnings_available for payouts, less what failed payouts returned,
    is at most what matured into it."""
    rows = (
        Posting.objects.filter(account__kind=AccountKind.EARNINGS_AVAILABLE)
        .values("account_id", "account__user_id")
        .annotate(
            matured=Coalesce(
                Sum("amount_micros", filter=Q(transaction__kind=TransactionKind.MATURITY)), 0
            ),
            paid=Coalesce(
                Sum(
                    "amount_micros",
                    filter=Q(
                        transaction__kind__in=[
                            TransactionKind.PAYOUT,
                            TransactionKind.PAYOUT_REVERSAL,
                        ]
                    ),
                ),
                0,
            ),
        )
        .order_by("account_id")
    )
    problems: list[Problem] = []
    for row in rows:
        paid, matured = -int(row["paid"]), int(row["matured"])
        if paid > matured:
            problems.append(
                Problem(
                    invariant="payouts_within_matured",
                    message=f"owner {row['account__user_id']} was paid out {paid}, "
                    f"more than the {matured} that matured",
                    account_id=row["account_id"],
                    expected_micros=matured,
                    actual_micros=paid,
                )
            )
    return problems[:PROBLEMS_KEPT]


def _job_problems(provider: JobFactsProvider) -> list[Problem]:
    escrows = dict(
        Account.objects.filter(kind=AccountKind.ESCROW)
        .exclude(balance_micros=0)
        .values_list("job_id", "balance_micros")
    )
    charged = {
        row["account__job_id"]: -int(row["total"])
        for row in Posting.objects.filter(
            account__kind=AccountKind.ESCROW,
            transaction__kind__in=[TransactionKind.CAPTURE, TransactionKind.REVERSAL],
        )
        .values("account__job_id")
        .annotate(total=Sum("amount_micros"))
        .order_by()
    }
    facts = provider(frozenset(job for job in [*escrows, *charged] if job is not None))
    problems: list[Problem] = []
    for job_id, fact in sorted(facts.items()):
        balance = escrows.get(job_id, 0)
        if fact.is_finished and balance:
            problems.append(
                Problem(
                    invariant="finished_job_escrow_empty",
                    message=f"job {job_id} is finished but its escrow holds {balance}",
                    job_id=job_id,
                    expected_micros=0,
                    actual_micros=balance,
                )
            )
        spent = charged.get(job_id, 0)
        if fact.charged_micros is not None and fact.charged_micros != spent:
            problems.append(
                Problem(
                    invariant="job_cost_matches_charges",
                    message=f"job {job_id} records a cost of {fact.charged_micros}, "
                    f"the ledger charged {spent}",
                    job_id=job_id,
                    expected_micros=spent,
                    actual_micros=fact.charged_micros,
                )
            )
        if fact.cap_micros is not None and spent > fact.cap_micros:
            problems.append(
                Problem(
                    invariant="charges_within_cap",
                    message=f"job {job_id} was charged {spent}, over its cap {fact.cap_micros}",
                    job_id=job_id,
                    expected_micros=fact.cap_micros,
                    actual_micros=spent,
                )
            )
    return problems


def ledger_reconcile(*, job_facts: JobFactsProvider | None = None) -> ReconciliationReport:
    """Check every ledger invariant and record the outcome as a ``ReconciliationRun``.

    Takes no locks and writes no ledger rows; safe to run at any time and concurrently with
    charges. ``job_facts`` (else ``ledger.providers``' registered one) enables the two job
    checks.
    """
    started_at = timezone.now()
    provider = job_facts or providers.job_facts
    checks = [name for name in INVARIANTS if provider is not None or name not in JOB_CHECKS]
    problems = [
        *_unbalanced_transactions(),
        *_balance_mismatches(),
        *_forbidden_negatives(),
        *_payouts_over_matured(),
        *_platform_loss_outside_paths(),
    ]
    if provider is not None:
        problems.extend(_job_problems(provider))
    run = ReconciliationRun.objects.create(
        started_at=started_at,
        finished_at=timezone.now(),
        is_clean=not problems,
        checks=checks,
        accounts_checked=Account.objects.count(),
        transactions_checked=LedgerTransaction.objects.count(),
        problem_count=len(problems),
        problems=[asdict(problem) for problem in problems[:PROBLEMS_KEPT]],
    )
    return ReconciliationReport(
        run_id=run.pk,
        started_at=run.started_at,
        finished_at=run.finished_at,
        checks=checks,
        accounts_checked=run.accounts_checked,
        transactions_checked=run.transactions_checked,
        problems=problems,
    )
