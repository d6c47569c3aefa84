"""Reconciliation: check every ledger invariant and report each one broken.

It only reads the ledger (and records a ``ReconciliationRun``): a problem is reported for a
person to look at, never "fixed" by rewriting balances. Each check is one SQL statement, so it
sees one consistent snapshot even while charges keep committing.

Two ways to run (docs/ledger.md, "Incremental runs"). A **full** run rebuilds every balance from
every posting, as it always did, and then sums the postings up to the safe horizon
(``ledger.services.horizon``) per account into ``ReconciledAccount`` rows, with the horizon
kept in the ``LedgerCheckpoint`` "reconcile". An **incremental** run checks only the postings
after that checkpoint (and the transactions they belong to), each touched account's balance
against its kept sum plus the new postings, and the same invariants over those sums; then it
adds the new postings up to the horizon to the sums. Its cost follows the postings since the
last run, not all of them. A full run comes first, then once every
``RECONCILE_FULL_EVERY_HOURS``, on request (``full=True``, ``manage.py ledger_reconcile
--full``), after a run that was not clean, and whenever an incremental run finds a problem (so
that every report of a problem is a full one, and the kept sums are rebuilt). What only a full
run can see: a change to something before the checkpoint that left no new posting (a posting
or a balance edited behind the ledger's back, a job's recorded cost changed after it settled).

The ledger knows nothing about jobs. The job invariants (a finished job's escrow is empty; a
job's charges stay within its cap; a settled job's recorded cost equals its charges) need facts
only the jobs app has: it provides them through a ``JobFactsProvider`` — passed in, or the one
the jobs app registered in ``ledger.providers``. Without one those checks are skipped and the
run says so in ``checks``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.transactions import durable_call
from ledger.models import (
    RECONCILED_OPEN_JOB,
    Account,
    AccountKind,
    LedgerCheckpoint,
    LedgerTransaction,
    Posting,
    ReconciledAccount,
    ReconciliationMode,
    ReconciliationRun,
    TransactionKind,
)
from ledger.providers import providers
from ledger.services import reconcile_sql
from ledger.services.horizon import Horizon, horizon_take

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
    mode: str = ReconciliationMode.FULL
    # Why the run was full; "" for an incremental run.
    reason: str = ""
    postings_checked: int = 0
    # The checkpoint after the run (the postings up to it are in the kept sums).
    through_posting_id: int = 0

    @property
    def is_clean(self) -> bool:
        return not self.problems


def _unbalanced(pk: int, key: str, total: int, lines: int) -> Problem:
    return Problem(
        invariant="transaction_balanced",
        message=f"transaction {key!r} has {lines} postings summing to {total}",
        transaction_id=pk,
        expected_micros=0,
        actual_micros=total,
    )


def _unbalanced_transactions() -> list[Problem]:
    rows = (
        LedgerTransaction.objects.annotate(
            total=Coalesce(Sum("postings__amount_micros"), 0), lines=Count("postings")
        )
        .filter(~Q(total=0) | Q(lines__lt=2))
        .order_by("pk")
        .values_list("pk", "key", "total", "lines")[:PROBLEMS_KEPT]
    )
    return [_unbalanced(pk, key, total, lines) for pk, key, total, lines in rows]


def _balance_mismatch(account: Account, rebuilt: int) -> Problem:
    return Problem(
        invariant="balance_matches_postings",
        message=f"{account}: cached {account.balance_micros}, postings sum to {rebuilt}",
        account_id=account.pk,
        expected_micros=rebuilt,
        actual_micros=account.balance_micros,
    )


def _negative(account: Account, rebuilt: int) -> Problem:
    lowest = min(account.balance_micros, rebuilt)
    return Problem(
        invariant="no_forbidden_negative",
        message=f"{account} is negative: {lowest}",
        account_id=account.pk,
        expected_micros=0,
        actual_micros=lowest,
    )


def _paid_over_matured(account_id: int, owner_id: int | None, paid: int, matured: int) -> Problem:
    return Problem(
        invariant="payouts_within_matured",
        message=f"owner {owner_id} was paid out {paid}, more than the {matured} that matured",
        account_id=account_id,
        expected_micros=matured,
        actual_micros=paid,
    )


def _balance_mismatches() -> list[Problem]:
    rows = (
        Account.objects.annotate(rebuilt=Coalesce(Sum("postings__amount_micros"), 0))
        .exclude(balance_micros=F("rebuilt"))
        .order_by("pk")[:PROBLEMS_KEPT]
    )
    return [_balance_mismatch(account, account.rebuilt) for account in rows]


def _forbidden_negatives() -> list[Problem]:
    rows = (
        Account.objects.filter(must_not_be_negative=True)
        .annotate(rebuilt=Coalesce(Sum("postings__amount_micros"), 0))
        .filter(Q(balance_micros__lt=0) | Q(rebuilt__lt=0))
        .order_by("pk")[:PROBLEMS_KEPT]
    )
    return [_negative(account, account.rebuilt) for account in rows]


# The only kinds of transaction that may post to platform_loss: a refund or lost dispute that
# the wallet could not cover, and the repayment of such a debt out of a later purchase
# (ledger/payments/money.py). A reversal never does (ledger.services.holds.charges_reverse).
PLATFORM_LOSS_KINDS = (TransactionKind.REFUND, TransactionKind.PURCHASE)


def _platform_loss_outside_paths(postings: QuerySet[Posting] | None = None) -> list[Problem]:
    rows = (
        (Posting.objects.all() if postings is None else postings)
        .filter(account__kind=AccountKind.PLATFORM_LOSS)
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
                _paid_over_matured(row["account_id"], row["account__user_id"], paid, matured)
            )
    return problems[:PROBLEMS_KEPT]


def _job_problems(provider: JobFactsProvider) -> tuple[list[Problem], Mapping[int, JobFact]]:
    escrows: dict[int, int] = {
        job_id: balance
        for job_id, balance in Account.objects.filter(kind=AccountKind.ESCROW)
        .exclude(balance_micros=0)
        .values_list("job_id", "balance_micros")
        if job_id is not None
    }
    charged: dict[int, int] = {
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
    return _job_checks(facts, escrows, charged), facts


def _job_checks(
    facts: Mapping[int, JobFact], escrows: Mapping[int, int], charged: Mapping[int, int]
) -> list[Problem]:
    """The job invariants of the jobs in ``facts``, given their escrows' balances and what the
    ledger charged them (captures net of reversals)."""
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


# --- Incremental runs -------------------------------------------------------------------------

CHECKPOINT = "reconcile"
# The memory a full run's rebuild of the kept sums may hash in (PostgreSQL's work_mem, for
# that one statement).
_REBUILD_WORK_MEM = "256MB"
# job_settled is updated for at most this many jobs per statement.
_JOBS_PER_UPDATE = 5000


@dataclass
class _Checked:
    """What one run's checks found and read."""

    problems: list[Problem]
    accounts: int
    transactions: int
    postings: int
    # The jobs whose facts were asked, and those of them that said they settled (their cost
    # final and compared).
    asked_jobs: frozenset[int] = frozenset()
    settled_jobs: frozenset[int] = frozenset()
    # Incremental runs: the escrows of those settled jobs, and the kept sums' new values.
    settled_accounts: frozenset[int] = frozenset()
    kept: list[tuple[int, int | None, list[int]]] = field(default_factory=list)


def _full_check(provider: JobFactsProvider | None) -> _Checked:
    """Every invariant over every posting, transaction and account: the check as it was before
    the incremental runs (the benchmark's baseline is exactly this)."""
    problems = [
        *_unbalanced_transactions(),
        *_balance_mismatches(),
        *_forbidden_negatives(),
        *_payouts_over_matured(),
        *_platform_loss_outside_paths(),
    ]
    facts: Mapping[int, JobFact] = {}
    if provider is not None:
        job_problems, facts = _job_problems(provider)
        problems.extend(job_problems)
    return _Checked(
        problems=problems,
        accounts=Account.objects.count(),
        transactions=LedgerTransaction.objects.count(),
        postings=0,  # counted by _rebuild
        asked_jobs=frozenset(facts),
        settled_jobs=_settled(facts),
    )


def _settled(facts: Mapping[int, JobFact]) -> frozenset[int]:
    return frozenset(job for job, fact in facts.items() if fact.charged_micros is not None)


def _window_check(
    checkpoint: LedgerCheckpoint, provider: JobFactsProvider | None, through: int | None = None
) -> _Checked:
    """Every invariant, over the postings after the checkpoint and the sums kept up to it.

    One statement sums the new postings per account and compares each touched account's
    balance with its kept sum plus them (the same snapshot as the balance, so charges
    committing meanwhile can't make a false alarm); the transactions of those postings (and
    any newer transaction) are checked whole; the job checks ask about the touched escrows and
    those still open (money in them, or their job not yet seen settled). The same statement
    sums the postings up to ``through`` (the new horizon) apart: the kept sums' new values,
    in ``_Checked.kept``.
    """
    since = checkpoint.posting_id
    kept: list[tuple[int, int | None, list[int]]] = []
    balances: list[Problem] = []
    negatives: list[Problem] = []
    payouts: list[Problem] = []
    escrows: dict[int, int] = {}
    charged: dict[int, int] = {}
    escrow_accounts: dict[int, int] = {}
    touched: set[int] = set()
    postings = 0
    with connection.cursor() as cursor:
        cursor.execute(*reconcile_sql.touched(since, since if through is None else through))
        for row in cursor.fetchall():
            pk, kind, user_id, job_id, shard, balance, must_not, *sums = row
            rebuilt, matured, paid_net, spent, lines, *early = (int(value or 0) for value in sums)
            *taken_in, taken_lines = early
            if taken_lines:
                kept.append((pk, job_id, taken_in))
            touched.add(pk)
            postings += lines
            balance, must_not = int(balance), bool(must_not)
            if balance != rebuilt or (must_not and min(balance, rebuilt) < 0):
                # Only for the message (a model instance costs more than the whole check).
                account = Account(
                    pk=pk,
                    kind=kind,
                    user_id=user_id,
                    job_id=job_id,
                    shard=shard,
                    balance_micros=balance,
                    must_not_be_negative=must_not,
                )
                if balance != rebuilt:
                    balances.append(_balance_mismatch(account, rebuilt))
                if must_not and min(balance, rebuilt) < 0:
                    negatives.append(_negative(account, rebuilt))
            if kind == AccountKind.EARNINGS_AVAILABLE and -paid_net > matured:
                payouts.append(_paid_over_matured(pk, user_id, -paid_net, matured))
            if kind == AccountKind.ESCROW and job_id is not None:
                escrows[job_id], charged[job_id] = balance, -spent
                escrow_accounts[job_id] = pk
        cursor.execute(*reconcile_sql.window_transactions(since, checkpoint.transaction_id))
        (transactions,) = cursor.fetchone()
        cursor.execute(
            *reconcile_sql.window_transactions(
                since, checkpoint.transaction_id, limit=PROBLEMS_KEPT
            )
        )
        unbalanced = [
            _unbalanced(pk, key, int(total), int(lines)) for pk, key, total, lines in cursor
        ]
    problems = [
        *unbalanced,
        *balances[:PROBLEMS_KEPT],
        *negatives[:PROBLEMS_KEPT],
        *payouts[:PROBLEMS_KEPT],
        *_platform_loss_outside_paths(
            # Its few accounts first (a partial unique index), so that the postings are an id
            # range filtered by account.
            Posting.objects.filter(
                pk__gt=since,
                account_id__in=list(
                    Account.objects.filter(kind=AccountKind.PLATFORM_LOSS).values_list(
                        "pk", flat=True
                    )
                ),
            )
        ),
    ]
    accounts = len(touched)
    facts: Mapping[int, JobFact] = {}
    if provider is not None:
        still_open = ReconciledAccount.objects.filter(RECONCILED_OPEN_JOB).values_list(
            "account_id", "job_id", "account__balance_micros", "charged_micros"
        )
        for account_id, job_id, balance, spent in still_open:
            if account_id not in touched and job_id is not None:
                escrows[job_id], charged[job_id] = int(balance), -int(spent)
                escrow_accounts[job_id] = account_id
                accounts += 1
        facts = provider(frozenset(escrows)) if escrows else {}
        problems.extend(
            _job_checks(facts, {job: held for job, held in escrows.items() if held}, charged)
        )
    return _Checked(
        problems=problems,
        accounts=accounts,
        transactions=int(transactions),
        postings=postings,
        asked_jobs=frozenset(facts),
        settled_jobs=_settled(facts),
        settled_accounts=frozenset(escrow_accounts[job] for job in _settled(facts)),
        kept=kept,
    )


def _jobs_mark(
    *, jobs: Collection[int] = (), accounts: Collection[int] = (), settled: bool
) -> None:
    """Mark the kept sums of these jobs' escrows (or of these escrow accounts) settled or not."""
    for field_name, numbers in (("job_id__in", sorted(jobs)), ("pk__in", sorted(accounts))):
        for start in range(0, len(numbers), _JOBS_PER_UPDATE):
            ReconciledAccount.objects.filter(
                **{field_name: numbers[start : start + _JOBS_PER_UPDATE]}
            ).exclude(job_settled=settled).update(job_settled=settled)


def _advance(checkpoint: LedgerCheckpoint, horizon: Horizon | None, checked: _Checked) -> None:
    """Take the postings between the checkpoint and the horizon into the kept sums (summed by
    the window check's statement), and move the checkpoint to the horizon."""
    if horizon is not None and horizon.posting_id > checkpoint.posting_id:
        with connection.cursor() as cursor:
            reconcile_sql.kept_write(cursor, checked.kept)
        checkpoint.posting_id = horizon.posting_id
    if horizon is not None:
        checkpoint.transaction_id = max(checkpoint.transaction_id, horizon.transaction_id)
    _jobs_mark(accounts=checked.settled_accounts, settled=True)


def _rebuild(
    checkpoint: LedgerCheckpoint,
    horizon: Horizon | None,
    checked: _Checked,
    *,
    with_jobs: bool,
) -> None:
    """Sum every posting up to the horizon afresh (after a full run). Without a horizon, up to
    the checkpoint as it was: every posting up to it has committed."""
    through = (
        checkpoint.posting_id if horizon is None else max(checkpoint.posting_id, horizon.posting_id)
    )
    ReconciledAccount.objects.all().delete()
    # Jobs the full run asked about and did not find settled stay open; every other escrow's
    # job was either compared just now or had nothing to compare (no charges, nothing held).
    # One hash of every transaction's kind: in memory, not in batches on disk.
    with _planner({"work_mem": _REBUILD_WORK_MEM}), connection.cursor() as cursor:
        cursor.execute(*reconcile_sql.kept_rebuild(through, settled=with_jobs))
    if connection.vendor == "postgresql":
        # Fresh statistics, so that the incremental runs' planner finds the open jobs by their
        # partial index.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {ReconciledAccount._meta.db_table}")
    _jobs_mark(jobs=checked.asked_jobs - checked.settled_jobs, settled=False)
    checked.postings = Posting.objects.count()
    checkpoint.posting_id = through
    if horizon is not None:
        checkpoint.transaction_id = max(checkpoint.transaction_id, horizon.transaction_id)


@contextmanager
def _planner(values: Mapping[str, str]) -> Iterator[None]:
    """``SET LOCAL`` these PostgreSQL settings for the statements inside, then put them back
    (the run's transaction goes on). Nothing elsewhere."""
    if connection.vendor != "postgresql":
        yield
        return
    names = list(values)

    def assign(pairs: list[str]) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(['set_config(%s, %s, true)'] * len(names))}", pairs)

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(['current_setting(%s)'] * len(names))}", names)
        before = cursor.fetchone()
    assign([v for name in names for v in (name, values[name])])
    try:
        yield
    finally:
        assign([v for name, old in zip(names, before, strict=True) for v in (name, old)])


# How an incremental run's statements are planned (see _index_lookups).
_INDEX_LOOKUPS = {
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "enable_seqscan": "off",
    "jit": "off",
}


def _index_lookups() -> AbstractContextManager[None]:
    """Plan this run's statements as what they are: an id range of new postings, each joined
    to its transaction and account by primary key (nested loops). From its statistics the
    planner can't know how few postings lie after the checkpoint (they came after the last
    ANALYZE), and may hash whole tables to join them — the cost that grows with history, which
    the incremental run exists to avoid. Compiling them (JIT) costs more than they take."""
    return _planner(_INDEX_LOOKUPS)


def _checkpoint_locked() -> LedgerCheckpoint:
    """The reconciliation checkpoint, locked until the run commits: runs at once take turns."""
    found = LedgerCheckpoint.objects.select_for_update().filter(name=CHECKPOINT).first()
    if found is not None:
        return found
    LedgerCheckpoint.objects.bulk_create([LedgerCheckpoint(name=CHECKPOINT)], ignore_conflicts=True)
    return LedgerCheckpoint.objects.select_for_update().get(name=CHECKPOINT)


def _full_due(checkpoint: LedgerCheckpoint, now: datetime) -> str:
    """Why this run must be full, or "" when an incremental one will do."""
    if checkpoint.full_at is None:
        return "the first run"
    if not checkpoint.is_clean:
        return "the last run was not clean"
    every = timedelta(hours=settings.RECONCILE_FULL_EVERY_HOURS)
    if now - checkpoint.full_at >= every:
        return f"a full run every {settings.RECONCILE_FULL_EVERY_HOURS} h"
    return ""


def _reconcile(
    provider: JobFactsProvider | None,
    *,
    full: bool,
    horizon: Horizon | None,
    started_at: datetime,
) -> ReconciliationReport:
    checkpoint = _checkpoint_locked()
    checks = [name for name in INVARIANTS if provider is not None or name not in JOB_CHECKS]
    reason = "asked for" if full else _full_due(checkpoint, started_at)
    checked: _Checked | None = None
    if not reason:
        with _index_lookups():
            checked = _window_check(
                checkpoint, provider, None if horizon is None else horizon.posting_id
            )
            if not checked.problems:
                _advance(checkpoint, horizon, checked)
        if checked.problems:
            found = len(checked.problems)
            reason = f"the incremental run found {found} problem{'' if found == 1 else 's'}"
    if reason:
        checked = _full_check(provider)
        _rebuild(checkpoint, horizon, checked, with_jobs=provider is not None)
        checkpoint.full_at = started_at
    assert checked is not None
    problems = checked.problems
    checkpoint.is_clean = not problems
    checkpoint.updated_at = timezone.now()
    checkpoint.save()
    run = ReconciliationRun.objects.create(
        started_at=started_at,
        finished_at=timezone.now(),
        is_clean=not problems,
        checks=checks,
        mode=ReconciliationMode.FULL if reason else ReconciliationMode.INCREMENTAL,
        reason=reason[:200],
        accounts_checked=checked.accounts,
        transactions_checked=checked.transactions,
        postings_checked=checked.postings,
        through_posting_id=checkpoint.posting_id,
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
        mode=run.mode,
        reason=run.reason,
        postings_checked=run.postings_checked,
        through_posting_id=run.through_posting_id,
    )


def ledger_reconcile(
    *, job_facts: JobFactsProvider | None = None, full: bool = False
) -> ReconciliationReport:
    """Check every ledger invariant and record the outcome as a ``ReconciliationRun``.

    Incremental unless ``full`` or a full run is due (see the module's docstring); an
    incremental run that finds a problem is followed at once by a full one, whose report this
    is. Writes no ledger rows and takes no lock a charge waits for: only the checkpoint's row,
    so that two runs at once take turns. An entry point (the beat task's work): it takes the
    safe horizon, then runs in a durable transaction of its own — or, called inside an open
    transaction (a test's, a shell's), in that one, where the horizon only advances if that
    transaction has written nothing yet. ``job_facts`` (else ``ledger.providers``' registered
    one) enables the job checks.
    """
    started_at = timezone.now()
    provider = job_facts or providers.job_facts
    horizon = horizon_take(wait_seconds=settings.RECONCILE_HORIZON_WAIT_SECONDS)
    if connection.in_atomic_block:
        with transaction.atomic():
            return _reconcile(provider, full=full, horizon=horizon, started_at=started_at)
    return durable_call(_reconcile, provider, full=full, horizon=horizon, started_at=started_at)
