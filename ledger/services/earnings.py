"""Host earnings: pending earnings become available once the dispute window has passed since
the job they were earned on settled (docs/ledger.md, "Maturity").

What is due for an owner at a cutoff is their pending balance less what is not due yet. A run
works that out from what is new since the owner's last run, not from every posting the owner
ever earned (docs/ledger.md, "Incremental runs"): per pending account a ``MaturityState``
(the last posting it took in, the cutoff it decided at, the sum waiting) and ``MaturityWaiting``
rows — one per job not settled yet, and what becomes due later (a settled job's earnings, a
young capture) with the time it does. A run reads the account's postings after its state
(an index range), asks the jobs app about the jobs still waiting, and drops the rows that are
due. It is exact: it moves what the full computation over every posting would
(``_maturity_due_scan``, which ``earnings_mature(full=True)`` still runs).

Which owners a run visits: those with new earnings postings since the last run's safe horizon
(``LedgerCheckpoint`` "earnings-mature"), with rows due by the cutoff, or with a waiting job
that has settled since — not every owner with a pending balance.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.transactions import durable_call
from ledger.models import (
    Account,
    AccountKind,
    LedgerCheckpoint,
    LedgerTransaction,
    MaturityState,
    MaturityWaiting,
    Posting,
    TransactionKind,
)
from ledger.providers import providers
from ledger.services.horizon import Horizon, horizon_take
from ledger.services.posting import (
    AccountRef,
    Leg,
    LegsPlan,
    Replay,
    _accounts_select_locked,
    _post,
    earnings_available_ref,
    earnings_pending_ref,
)
from ledger.services.reconcile import JobFact, JobFactsProvider

CHECKPOINT = "earnings-mature"


# --- The full computation (every posting of the account) ----------------------------------------


def _jobs_final(pending: Account, cutoff: datetime) -> set[int] | None:
    """The jobs whose earnings on ``pending`` may mature: those settled (their attempts over,
    their charges final) at or before the cutoff, by the jobs app's facts
    (``ledger.providers``). None without a provider (the ledger alone): captures then mature
    by their age only."""
    provider = providers.job_facts
    if provider is None:
        return None
    job_ids = frozenset(
        job_id
        for job_id in Posting.objects.filter(account=pending, transaction__job_id__isnull=False)
        .values_list("transaction__job_id", flat=True)
        .distinct()
        if job_id is not None
    )
    facts = provider(job_ids) if job_ids else {}
    return {
        job_id
        for job_id, fact in facts.items()
        if fact.settled_at is not None and fact.settled_at <= cutoff
    }


def _maturity_due_scan(pending: Account, cutoff: datetime) -> int:
    """What of ``pending`` may become available now, from every posting of the account.

    A job's postings (its captures and their reversals, together) count once the job settled
    at or before the cutoff — the dispute window runs from the end of the work, so earnings
    of a job that still runs (or may still be lost) never mature; captures also only once
    older than the cutoff; earlier maturities are subtracted. Never more than the balance.
    """
    young_capture = Q(transaction__kind=TransactionKind.CAPTURE, transaction__created_at__gt=cutoff)
    maturity = Q(transaction__kind=TransactionKind.MATURITY)
    final = _jobs_final(pending, cutoff)
    unsettled = (
        Q(pk__in=[])
        if final is None
        else Q(transaction__job_id__isnull=False) & ~Q(transaction__job_id__in=final)
    )
    sums = Posting.objects.filter(account=pending).aggregate(
        eligible=Coalesce(Sum("amount_micros", filter=~young_capture & ~maturity & ~unsettled), 0),
        matured=Coalesce(Sum("amount_micros", filter=maturity), 0),
    )
    due = int(sums["eligible"]) + int(sums["matured"])
    return max(0, min(pending.balance_micros, due))


# --- The incremental computation ----------------------------------------------------------------


class _Waiting:
    """The changes to one account's waiting rows in this run: their sum's change, how many
    jobs wait to settle, the earliest time a new row is due."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.delta = 0
        self.unsettled = 0
        self.next_due: datetime | None = None
        self.created: list[MaturityWaiting] = []
        self.updated: list[MaturityWaiting] = []
        self.deleted: list[int] = []

    def add(
        self,
        *,
        job_id: int | None,
        due_at: datetime | None,
        amount: int,
        last_capture_at: datetime | None = None,
    ) -> None:
        # A job not settled yet keeps its row even at zero: its postings so far are in it.
        if amount or due_at is None:
            self.created.append(
                MaturityWaiting(
                    account=self.account,
                    job_id=job_id,
                    due_at=due_at,
                    last_capture_at=last_capture_at,
                    amount_micros=amount,
                )
            )
            self.delta += amount
            if due_at is None:
                self.unsettled += 1
            else:
                self.next_due = due_at if self.next_due is None else min(self.next_due, due_at)

    def settle(self, row: MaturityWaiting) -> None:
        """A job's row, now that the job has settled (its parts are added again as due)."""
        self.deleted.append(row.pk)
        self.delta -= row.amount_micros
        self.unsettled -= 1

    def grow(self, row: MaturityWaiting, amount: int, last_capture_at: datetime | None) -> None:
        row.amount_micros += amount
        row.last_capture_at = _latest(row.last_capture_at, last_capture_at)
        self.updated.append(row)
        self.delta += amount

    def write(self) -> None:
        if self.deleted:
            MaturityWaiting.objects.filter(pk__in=self.deleted).delete()
        if self.updated:
            MaturityWaiting.objects.bulk_update(self.updated, ["amount_micros", "last_capture_at"])
        if self.created:
            MaturityWaiting.objects.bulk_create(self.created)


def _latest(*times: datetime | None) -> datetime | None:
    present = [moment for moment in times if moment is not None]
    return max(present) if present else None


def _due_times(
    pending: Account, job_id: int, settled_at: datetime, after: int, through: int
) -> dict[datetime, int]:
    """When each part of a settled job's earnings in (after, through] becomes due: at its
    settlement, or a capture recorded later than that (clocks of two servers) at its own
    time."""
    rows = (
        Posting.objects.filter(
            account=pending, pk__gt=after, pk__lte=through, transaction__job_id=job_id
        )
        .exclude(transaction__kind=TransactionKind.MATURITY)
        .values_list("transaction__kind", "transaction__created_at", "amount_micros")
    )
    due: dict[datetime, int] = {}
    for kind, created_at, amount in rows:
        at = max(created_at, settled_at) if kind == TransactionKind.CAPTURE else settled_at
        due[at] = due.get(at, 0) + amount
    return due


_CAPTURE = Q(transaction__kind=TransactionKind.CAPTURE)
_MATURITY = Q(transaction__kind=TransactionKind.MATURITY)


def _maturity_due(pending: Account, cutoff: datetime) -> int:
    """What of ``pending`` may become available now (the same as ``_maturity_due_scan``), from
    its state: the postings after it, the waiting rows. Updates the state. Runs under the
    account's lock, so no other posting to it can commit meanwhile: its own ids are a safe
    high-water mark.

    Few statements when little is new (this runs once per owner with something new): the
    postings after the state in one aggregate per job; the rows of jobs not settled yet only
    when there are some, the rows due by now only when the state's earliest is."""
    provider = providers.job_facts
    by_jobs = provider is not None
    state = MaturityState.objects.filter(account=pending).first()
    if state is None or cutoff < state.cutoff or state.by_jobs != by_jobs:
        # The first run, a cutoff earlier than the last (a clock set back), or job facts that
        # came or went: decide every posting again.
        MaturityWaiting.objects.filter(account=pending).delete()
        state = MaturityState(account=pending, posting_id=0, cutoff=cutoff, waiting_micros=0)
    since = state.posting_id
    new = Posting.objects.filter(account=pending, pk__gt=since)
    # Per job (those of no job, and the maturities, together under None): their sum less the
    # maturities, their latest capture, their last id.
    groups = {
        job_id: (int(amount or 0), last_capture, top)
        for job_id, amount, last_capture, top in new.values("transaction__job_id")
        .annotate(
            amount=Sum("amount_micros", filter=~_MATURITY),
            last_capture=Max("transaction__created_at", filter=_CAPTURE),
            top=Max("pk"),
        )
        .values_list("transaction__job_id", "amount", "last_capture", "top")
        .order_by()
    }
    through = max((top for _amount, _last, top in groups.values()), default=since)
    waiting = _Waiting(pending)

    # Captures that wait for their age: all of them without job facts, else those of no job
    # (only read when there is a young one).
    jobless_last = groups.get(None, (0, None, 0))[1]
    if not by_jobs or (jobless_last is not None and jobless_last > cutoff):
        young = new.filter(_CAPTURE, pk__lte=through, transaction__created_at__gt=cutoff)
        if by_jobs:
            young = young.filter(transaction__job_id__isnull=True)
        for job_id, created_at, amount in (
            young.values("transaction__job_id", "transaction__created_at")
            .annotate(amount=Sum("amount_micros"))
            .values_list("transaction__job_id", "transaction__created_at", "amount")
            .order_by()
        ):
            waiting.add(job_id=job_id, due_at=created_at, amount=int(amount))

    if by_jobs:
        assert provider is not None
        jobs = {job: (amount, last) for job, (amount, last, _top) in groups.items() if job}
        _jobs_wait(pending, state, waiting, jobs, provider, through=through, cutoff=cutoff)

    # What was waiting and is due now.
    if state.next_due_at is not None and state.next_due_at <= cutoff:
        due_rows = MaturityWaiting.objects.filter(account=pending, due_at__lte=cutoff)
        matured = due_rows.aggregate(total=Coalesce(Sum("amount_micros"), 0))["total"]
        due_rows.delete()
        waiting.delta -= int(matured)
        state.next_due_at = (
            MaturityWaiting.objects.filter(account=pending, due_at__isnull=False)
            .order_by("due_at")
            .values_list("due_at", flat=True)
            .first()
        )
    waiting.write()
    state.next_due_at = _earliest(state.next_due_at, waiting.next_due)
    state.posting_id, state.cutoff, state.by_jobs = through, cutoff, by_jobs
    state.waiting_micros += waiting.delta
    state.unsettled_jobs += waiting.unsettled
    state.save()
    due = pending.balance_micros - state.waiting_micros
    return max(0, min(pending.balance_micros, due))


def _earliest(*times: datetime | None) -> datetime | None:
    present = [moment for moment in times if moment is not None]
    return min(present) if present else None


def _jobs_wait(
    pending: Account,
    state: MaturityState,
    waiting: _Waiting,
    new: Mapping[int, tuple[int, datetime | None]],
    provider: JobFactsProvider,
    *,
    through: int,
    cutoff: datetime,
) -> None:
    """Earnings of a job wait (one row per job) until it settles, then for the dispute window
    after its settlement. A job's row holds every posting of it on the account up to the
    state's; its facts are asked for again on every run until it settles. ``new``: the sum
    and latest capture of each job's postings after the state."""
    old = (
        {
            row.job_id: row
            for row in MaturityWaiting.objects.filter(account=pending, due_at__isnull=True)
            if row.job_id is not None
        }
        if state.unsettled_jobs
        else {}
    )
    jobs = frozenset(old) | frozenset(new)
    if not jobs:
        return
    facts: Mapping[int, JobFact] = provider(jobs)
    for job_id in sorted(jobs):
        fact = facts.get(job_id)
        settled_at = None if fact is None else fact.settled_at
        row = old.get(job_id)
        amount, last_capture = new.get(job_id, (0, None))
        if settled_at is None:
            if row is None:
                waiting.add(job_id=job_id, due_at=None, amount=amount, last_capture_at=last_capture)
            elif job_id in new:
                waiting.grow(row, amount, last_capture)
            continue
        total = amount
        if row is not None:
            waiting.settle(row)
            total += row.amount_micros
            last_capture = _latest(row.last_capture_at, last_capture)
        if last_capture is None or last_capture <= settled_at:
            due = {settled_at: total}
        else:
            after = 0 if row is not None else state.posting_id
            due = _due_times(pending, job_id, settled_at, after, through)
        for due_at, part in due.items():
            if due_at > cutoff:
                waiting.add(job_id=job_id, due_at=due_at, amount=part)


def _maturity_plan(pending: AccountRef, available: AccountRef, cutoff: datetime) -> LegsPlan:
    """The old way, for ``full=True``: the amount from every posting, under the lock."""

    def legs(locked: Mapping[AccountRef, Account]) -> list[Leg]:
        due = _maturity_due_scan(locked[pending], cutoff)
        return [Leg(pending, -due), Leg(available, due)]

    return legs


def _maturity_post(
    owner_id: int, cutoff: datetime, legs: list[Leg] | LegsPlan
) -> LedgerTransaction | None:
    pending, available = earnings_pending_ref(owner_id), earnings_available_ref(owner_id)
    return _post(
        kind=TransactionKind.MATURITY,
        key=f"earnings-mature:{owner_id}:{cutoff.isoformat()}",
        accounts=[pending, available],
        legs=legs,
        replay=Replay.SAME_CAUSE,
        memo=f"earnings up to {cutoff:%Y-%m-%d %H:%M:%S} UTC available",
    )


def _owner_mature_full(owner_id: int, cutoff: datetime) -> LedgerTransaction | None:
    pending, available = earnings_pending_ref(owner_id), earnings_available_ref(owner_id)
    return _maturity_post(owner_id, cutoff, _maturity_plan(pending, available, cutoff))


def _owner_mature(owner_id: int, cutoff: datetime) -> LedgerTransaction | None:
    """One owner's maturity: lock both earnings accounts (pk order), bring the state up to
    date and post what is due. An owner with nothing pending only has their state updated."""
    pending, available = earnings_pending_ref(owner_id), earnings_available_ref(owner_id)
    locked = _accounts_select_locked([pending, available])
    account = locked.get(pending)
    if account is None:
        return None
    due = _maturity_due(account, cutoff)
    if account.balance_micros <= 0:
        return None
    return _maturity_post(owner_id, cutoff, [Leg(pending, -due), Leg(available, due)])


def _owners_to_visit(since: int, cutoff: datetime) -> list[int]:
    """The owners whose maturity may have changed: new earnings postings after ``since`` (an
    index range on the postings' id), rows due by the cutoff, jobs waiting that have settled
    (and, with no job facts now, rows that waited for them)."""
    owners = set(
        Posting.objects.filter(pk__gt=since, account__kind=AccountKind.EARNINGS_PENDING)
        .exclude(transaction__kind=TransactionKind.MATURITY)
        .values_list("account__user_id", flat=True)
        .distinct()
    )
    owners.update(
        MaturityWaiting.objects.filter(due_at__lte=cutoff)
        .values_list("account__user_id", flat=True)
        .distinct()
    )
    unsettled = list(
        MaturityWaiting.objects.filter(due_at__isnull=True).values_list(
            "account__user_id", "job_id"
        )
    )
    provider = providers.job_facts
    if unsettled and provider is None:
        owners.update(owner for owner, _job in unsettled)
    elif unsettled and provider is not None:
        facts = provider(frozenset(job for _owner, job in unsettled if job is not None))
        owners.update(
            owner
            for owner, job in unsettled
            if job is not None and job in facts and facts[job].settled_at is not None
        )
    return sorted(owner for owner in owners if owner is not None)


def earnings_mature(*, now: datetime | None = None, full: bool = False) -> int:
    """Move every host owner's pending earnings older than the dispute window to available.

    ``EARNINGS_DISPUTE_WINDOW_SECONDS`` is the window. A batch entry point (the periodic task's
    work), the one ledger function that opens transactions: one ``durable_call`` per owner, each
    locking that owner's two earnings accounts in pk order, so that one run never holds every
    owner's earnings locked at once; safe to run concurrently and to retry (the key names the
    owner and the cutoff, and the amount is computed under the lock). Visits only the owners
    something changed for since the last run, and reads only what is new for each
    (module docstring). ``full``: the way it was before, every owner with pending earnings and
    every posting of theirs (a check, and the benchmark's baseline); it moves the same amounts.
    Returns the number of maturity transactions written.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.EARNINGS_DISPUTE_WINDOW_SECONDS)
    horizon: Horizon | None = None
    if full:
        owner_ids = list(
            Account.objects.filter(kind=AccountKind.EARNINGS_PENDING, balance_micros__gt=0)
            .order_by("user_id")
            .values_list("user_id", flat=True)
        )
        step = _owner_mature_full
    else:
        horizon = horizon_take(wait_seconds=settings.RECONCILE_HORIZON_WAIT_SECONDS)
        since = (
            LedgerCheckpoint.objects.filter(name=CHECKPOINT)
            .values_list("posting_id", flat=True)
            .first()
        )
        owner_ids = _owners_to_visit(since or 0, cutoff)
        step = _owner_mature
    written = 0
    for owner_id in owner_ids:
        assert owner_id is not None
        posted = durable_call(step, owner_id, cutoff)
        if posted is not None and not posted.is_replay:
            written += 1
    if horizon is not None:
        _checkpoint_advance(horizon.posting_id)
    return written


def _checkpoint_advance(posting_id: int) -> None:
    """Every owner with an earnings posting up to ``posting_id`` was visited (or had nothing
    new); a monotone update, so runs at once can only move it forward."""
    LedgerCheckpoint.objects.bulk_create([LedgerCheckpoint(name=CHECKPOINT)], ignore_conflicts=True)
    LedgerCheckpoint.objects.filter(name=CHECKPOINT, posting_id__lt=posting_id).update(
        posting_id=posting_id, updated_at=timezone.now()
    )
