"""Reconciliation and maturity against the size of the ledger's history (issue 17).

For each size N (postings), in a scratch database: N postings of history are loaded by COPY
(jobs held, charged, released; purchases; each owner's earnings matured now and then), then in
the same run:

- **full reconciliation**: the old path (every invariant over every posting, what
  ``ledger_reconcile`` was before: the baseline) and the new full run (the same checks, then the
  kept sums rebuilt);
- **incremental reconciliation after ``--new`` new postings** (jobs written through the
  services, as metering does), beside the old path on the same data;
- **maturity after ``--earnings`` new earnings postings** (captures of settled jobs on every
  owner's hosts): the incremental run, and the old path (``earnings_mature(full=True)``: every
  owner with pending earnings, every posting of theirs) after as many more of the same.

The sizes grow in one database: the second size adds to the first's history. Job facts come
from the history itself (a provider registered for the run). The dispute window is zero, so
the history's earnings matured when it was written and the new ones are due at once.

Run: ``python -m bench.ledger_history --sizes 1000000 10000000 --new 10000 --earnings 10000
--owners 200 --renters 200`` (the figures of docs/benchmarks.md; the defaults are small) on
PostgreSQL (``DATABASE_URL``, a user that may set ``session_replication_role``: the load skips
the per-row triggers). It uses a scratch database and drops it afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bench._django import django_setup, scratch_database

T = TypeVar("T")
CAPTURES_PER_JOB = 10
# Job ids of the work the services write, apart from the history's.
SERVICE_JOBS = 1_000_000_000
_SHARDS = 16


def _seconds(work: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def _copy(table: str, columns: Sequence[str], text: io.StringIO) -> None:
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(text.getvalue())


def _fields(*values: object) -> str:
    return "\t".join("\\N" if value is None else str(value) for value in values) + "\n"


# A load of this many postings or more drops the secondary indexes of postings and
# transactions first and builds them again after: faster than keeping them up row by row.
BUILD_WITHOUT_INDEXES_FROM = 500_000


@contextmanager
def _indexes_set_aside(*, large: bool) -> Iterator[None]:
    """Drop the postings' and transactions' secondary indexes (and the key's unique
    constraint) for a large load, and build them again afterwards, as they were."""
    from django.db import connection

    if not large:
        yield
        return
    tables = ("ledger_posting", "ledger_ledgertransaction")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'u' AND conrelid::regclass::text = ANY(%s)",
            [list(tables)],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY(%s) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            [list(tables)],
        )
        indexes = cursor.fetchall()
        for name, table, _definition in constraints:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for name, _definition in indexes:
            cursor.execute(f"DROP INDEX {name}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '512MB'")
            for _name, definition in indexes:
                cursor.execute(definition)
            for name, table, definition in constraints:
                cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
            cursor.execute("RESET maintenance_work_mem")


@dataclass
class History:
    """A consistent ledger history, written by COPY, and the job facts that go with it."""

    renters: list[int]
    owners: list[int]
    wallet: dict[int, int]
    pending: dict[int, int]
    available: dict[int, int]
    revenue: list[int]
    stripe: int
    facts: dict[int, Any] = field(default_factory=dict)
    next_job: int = 1
    postings: int = 0
    # The history's clock: jobs a minute apart, ending before now.
    clock: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=400))

    @classmethod
    def create(cls, renters: int, owners: int) -> History:
        from accounts.models import User
        from ledger.models import NON_NEGATIVE_KINDS, Account, AccountKind

        users = User.objects.bulk_create(
            User(username=f"history-{n}", email=f"history-{n}@bench.invalid", password="!")
            for n in range(renters + owners)
        )
        renter_ids = [user.pk for user in users[:renters]]
        owner_ids = [user.pk for user in users[renters:]]

        def account(kind: AccountKind, **owner: int) -> Account:
            return Account(kind=kind, must_not_be_negative=kind in NON_NEGATIVE_KINDS, **owner)

        wallets = Account.objects.bulk_create(
            account(AccountKind.WALLET, user_id=user) for user in renter_ids
        )
        pending = Account.objects.bulk_create(
            account(AccountKind.EARNINGS_PENDING, user_id=user) for user in owner_ids
        )
        available = Account.objects.bulk_create(
            account(AccountKind.EARNINGS_AVAILABLE, user_id=user) for user in owner_ids
        )
        revenue = Account.objects.bulk_create(
            account(AccountKind.REVENUE, shard=shard) for shard in range(_SHARDS)
        )
        stripe = Account.objects.create(
            kind=AccountKind.STRIPE_CLEARING, must_not_be_negative=False
        )
        return cls(
            renters=renter_ids,
            owners=owner_ids,
            wallet={user: a.pk for user, a in zip(renter_ids, wallets, strict=True)},
            pending={user: a.pk for user, a in zip(owner_ids, pending, strict=True)},
            available={user: a.pk for user, a in zip(owner_ids, available, strict=True)},
            revenue=[a.pk for a in revenue],
            stripe=stripe.pk,
        )

    def grow(self, postings: int, *, captures: int = CAPTURES_PER_JOB) -> None:
        """Add about ``postings`` postings of history (whole jobs), in batches."""
        from django.db import connection, transaction

        target = self.postings + postings
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
        try:
            with _indexes_set_aside(large=postings >= BUILD_WITHOUT_INDEXES_FROM):
                while self.postings < target:
                    jobs = min(20_000, max(1, (target - self.postings) // (3 * captures + 4)))
                    with transaction.atomic():
                        self._batch(jobs, captures)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = DEFAULT")
                for table in ("ledger_account", "ledger_ledgertransaction", "ledger_posting"):
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT MAX(id) FROM {table}))"
                    )

    def _batch(self, jobs: int, captures: int) -> None:
        from django.db import connection

        from ledger.models import AccountKind
        from ledger.services import JobFact

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT (SELECT MAX(id) FROM ledger_account), "
                "(SELECT MAX(id) FROM ledger_ledgertransaction), "
                "(SELECT MAX(id) FROM ledger_posting)"
            )
            account_id, txn_id, posting_id = (int(value or 0) for value in cursor.fetchone())
        accounts, txns, lines = io.StringIO(), io.StringIO(), io.StringIO()
        moved: dict[int, int] = {}
        written = 0

        def txn(
            key: str,
            kind: str,
            at: datetime,
            job: int | None,
            legs: list[tuple[int, int]],
            attempt: int | None = None,
            host: int | None = None,
            meta: str = "{}",
        ) -> None:
            nonlocal txn_id, posting_id, written
            txn_id += 1
            txns.write(
                _fields(txn_id, key, kind, "", at.isoformat(), None, job, attempt, host, meta)
            )
            for account, amount in legs:
                posting_id += 1
                lines.write(_fields(posting_id, txn_id, account, amount))
                moved[account] = moved.get(account, 0) + amount
            written += len(legs)

        first = self.next_job
        spend: dict[int, int] = {}
        plans = []
        for job in range(first, first + jobs):
            gross = 1_000 + (job % 7) * 100
            hold = captures * gross + 5_000
            renter = self.renters[job % len(self.renters)]
            spend[renter] = spend.get(renter, 0) + captures * gross
            plans.append((job, gross, hold, renter))
        self.clock += timedelta(seconds=1)
        for renter, amount in sorted(spend.items()):
            txn(
                f"history:buy:{first}:{renter}",
                "purchase",
                self.clock,
                None,
                [(self.stripe, -amount), (self.wallet[renter], amount)],
            )
        unmatured: dict[int, int] = {}
        for job, gross, hold, renter in plans:
            owner = self.owners[job % len(self.owners)]
            fee = gross // 10
            account_id += 1
            escrow = account_id
            started = self.clock = self.clock + timedelta(minutes=1)
            accounts.write(
                _fields(escrow, AccountKind.ESCROW, renter, job, 0, 0, "t", started.isoformat())
            )
            txn(
                f"job-hold:{job}",
                "hold",
                started,
                job,
                [(self.wallet[renter], -hold), (escrow, hold)],
            )
            revenue = self.revenue[job % _SHARDS]
            host = job % 1000 + 1
            for n in range(captures):
                meta = json.dumps(
                    {
                        "job_id": job,
                        "attempt": 1,
                        "host_owner_id": owner,
                        "gross_micros": gross,
                        "fee_micros": fee,
                        "host_id": host,
                    },
                )
                txn(
                    f"usage:{job}:1:{n * gross}",
                    "capture",
                    started + timedelta(seconds=n + 1),
                    job,
                    [(escrow, -gross), (self.pending[owner], gross - fee), (revenue, fee)],
                    attempt=1,
                    host=host,
                    meta=meta,
                )
            settled = started + timedelta(seconds=captures + 1)
            txn(
                f"job-release:{job}",
                "release",
                settled,
                job,
                [(escrow, -5_000), (self.wallet[renter], 5_000)],
            )
            self.facts[job] = JobFact(
                is_finished=True,
                cap_micros=hold,
                charged_micros=captures * gross,
                settled_at=settled,
            )
            unmatured[owner] = unmatured.get(owner, 0) + captures * (gross - fee)
            if unmatured[owner] >= 50 * captures * gross:
                self._mature(txn, owner, unmatured.pop(owner), settled)
        for owner, amount in sorted(unmatured.items()):
            self._mature(txn, owner, amount, self.clock)
        _copy(
            "ledger_account",
            [
                "id",
                "kind",
                "user_id",
                "job_id",
                "shard",
                "balance_micros",
                "must_not_be_negative",
                "created_at",
            ],
            accounts,
        )
        _copy(
            "ledger_ledgertransaction",
            [
                "id",
                "key",
                "kind",
                "memo",
                "created_at",
                "created_by_id",
                "job_id",
                "attempt",
                "host_id",
                "metadata",
            ],
            txns,
        )
        _copy("ledger_posting", ["id", "transaction_id", "account_id", "amount_micros"], lines)
        # Every escrow ends empty; the other accounts move by what their postings add up to.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE ledger_account SET balance_micros = balance_micros + moved.amount "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS moved(id, amount) "
                "WHERE ledger_account.id = moved.id",
                [list(moved), list(moved.values())],
            )
        self.next_job += jobs
        self.postings += written

    def _mature(self, txn: Callable[..., None], owner: int, amount: int, at: datetime) -> None:
        at += timedelta(seconds=1)
        txn(
            f"earnings-mature:{owner}:{at.isoformat()}",
            "maturity",
            at,
            None,
            [(self.pending[owner], -amount), (self.available[owner], amount)],
        )

    def job_facts(self, job_ids: frozenset[int]) -> Mapping[int, Any]:
        return {job: self.facts[job] for job in job_ids if job in self.facts}


def _service_jobs(
    history: History, first_job: int, jobs: int, captures: int, *, batch: int = 200
) -> int:
    """Jobs written through the services, as the marketplace does: a hold, captures posted in
    batches (metering's ``holds_capture_many``), a release; their facts say settled now.
    Returns how many postings they wrote."""
    from django.utils import timezone

    from accounts.models import User
    from config.transactions import durable_call
    from ledger.models import Posting
    from ledger.services import (
        Capture,
        JobFact,
        hold_place,
        hold_release,
        holds_capture_many,
        wallet_credit,
    )

    before = Posting.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    gross, fee = 1_000, 100
    hold = captures * gross + 5_000
    numbers = range(first_job, first_job + jobs)
    renters = User.objects.in_bulk(history.renters)
    needs: dict[int, int] = {}
    for job in numbers:
        renter = history.renters[job % len(history.renters)]
        needs[renter] = needs.get(renter, 0) + hold
    for renter, amount in sorted(needs.items()):
        durable_call(
            wallet_credit,
            user=renters[renter],
            amount_micros=amount,
            key=f"bench:buy:{first_job}:{renter}",
            reason="bench",
        )
    for job in numbers:
        renter = history.renters[job % len(history.renters)]
        durable_call(
            hold_place,
            user=renters[renter],
            job_id=job,
            amount_micros=hold,
            key=f"job-hold:{job}",
        )
    pending = [
        Capture(
            job_id=job,
            attempt=1,
            host_owner_id=history.owners[job % len(history.owners)],
            gross_micros=gross,
            fee_micros=fee,
            key=f"usage:{job}:1:{n * gross}",
            host_id=job % 1000 + 1,
        )
        for n in range(captures)
        for job in numbers
    ]
    for start in range(0, len(pending), batch):
        durable_call(holds_capture_many, pending[start : start + batch])
    for job in numbers:
        durable_call(hold_release, job_id=job, key=f"job-release:{job}")
        history.facts[job] = JobFact(
            is_finished=True,
            cap_micros=hold,
            charged_micros=captures * gross,
            settled_at=timezone.now(),
        )
    return Posting.objects.filter(pk__gt=before).count()


@dataclass
class Row:
    postings: int
    build_seconds: float
    full_old: float = 0.0
    full_new: float = 0.0
    new_postings: int = 0
    incremental: float = 0.0
    incremental_old: float = 0.0
    incremental_read: int = 0
    first_maturity: float = 0.0
    new_earnings: int = 0
    maturity: float = 0.0
    maturity_old: float = 0.0
    matured: tuple[int, int] = (0, 0)


def measure(
    sizes: Sequence[int],
    *,
    new: int = 10_000,
    earnings: int = 10_000,
    owners: int = 200,
    renters: int = 200,
    out: Callable[[str], None] = print,
) -> list[Row]:
    """Grow the history to each size and time the runs there. The database must be empty and
    the dispute window zero (``main`` sets it)."""
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from ledger.models import ReconciliationMode
    from ledger.providers import providers
    from ledger.services import earnings_mature, ledger_reconcile
    from ledger.services.reconcile import _full_check

    assert settings.EARNINGS_DISPUTE_WINDOW_SECONDS == 0, "the history matured as it was written"
    history = History.create(renters, owners)
    providers.job_facts = history.job_facts
    service_job = SERVICE_JOBS
    rows: list[Row] = []
    try:
        for size in sizes:
            build, _ = _seconds(lambda: history.grow(size - history.postings))  # noqa: B023
            connection.ensure_connection()
            with connection.cursor() as cursor:
                for table in ("ledger_posting", "ledger_ledgertransaction", "ledger_account"):
                    cursor.execute(f"VACUUM ANALYZE {table}")
            row = Row(postings=history.postings, build_seconds=build)
            out(f"  {history.postings:,} postings of history loaded in {build:.1f} s")

            row.full_old, checked = _seconds(lambda: _full_check(history.job_facts))
            assert not checked.problems, checked.problems[:3]
            row.full_new, report = _seconds(lambda: ledger_reconcile(full=True))
            assert report.is_clean, report.problems[:3]

            jobs = max(1, new // (3 * CAPTURES_PER_JOB + 4))
            row.new_postings = _service_jobs(history, service_job, jobs, CAPTURES_PER_JOB)
            service_job += jobs
            row.incremental, report = _seconds(ledger_reconcile)
            assert report.mode == ReconciliationMode.INCREMENTAL, report
            assert report.is_clean, report.problems[:3]
            row.incremental_read = report.postings_checked
            row.incremental_old, checked = _seconds(lambda: _full_check(history.job_facts))
            assert not checked.problems, checked.problems[:3]
            out(
                f"  reconciliation: full {row.full_old:.2f} s (old) / {row.full_new:.2f} s "
                f"(new), incremental after {row.new_postings:,} postings "
                f"{row.incremental:.3f} s (old path {row.incremental_old:.2f} s)"
            )

            # Maturity: the first incremental run after the load takes in the loaded history.
            row.first_maturity, _ = _seconds(
                lambda: earnings_mature(now=timezone.now() + timedelta(seconds=1))
            )
            timings = []
            for full in (False, True):
                jobs = max(1, earnings // (2 * CAPTURES_PER_JOB))
                _service_jobs(history, service_job, jobs, 2 * CAPTURES_PER_JOB)
                service_job += jobs
                seconds, written = _seconds(
                    lambda: earnings_mature(now=timezone.now() + timedelta(seconds=1), full=full)  # noqa: B023
                )
                timings.append((seconds, written))
            row.new_earnings = jobs * 2 * CAPTURES_PER_JOB
            (row.maturity, new_written), (row.maturity_old, old_written) = timings
            row.matured = (new_written, old_written)
            out(
                f"  maturity after {row.new_earnings:,} earnings postings: {row.maturity:.3f} s "
                f"({new_written} owners), old path {row.maturity_old:.2f} s ({old_written}); "
                f"first run after the load {row.first_maturity:.2f} s"
            )
            report = ledger_reconcile()
            assert report.is_clean, report.problems[:3]
            rows.append(row)
    finally:
        providers.job_facts = None
    return rows


def _report(rows: Sequence[Row], version: str) -> None:
    print(f"ledger_history: {version}; seconds, the old (full) path of the same run beside")
    print(
        f"{'postings':>12}{'build':>8}{'full old':>10}{'full new':>10}"
        f"{'incr.':>9}{'old':>8}{'x':>7}{'mature':>9}{'old':>8}{'x':>7}"
    )
    for row in rows:
        print(
            f"{row.postings:>12,}{row.build_seconds:>8.1f}{row.full_old:>10.2f}"
            f"{row.full_new:>10.2f}{row.incremental:>9.3f}{row.incremental_old:>8.2f}"
            f"{row.incremental_old / row.incremental:>7.0f}{row.maturity:>9.3f}"
            f"{row.maturity_old:>8.2f}{row.maturity_old / row.maturity:>7.0f}"
        )
    if rows:
        new, earnings = rows[-1].new_postings, rows[-1].new_earnings
        print(
            f"incr.: incremental reconciliation after {new:,} new postings; mature: maturity "
            f"after {earnings:,} new earnings postings; x: old / new"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_history", description=__doc__)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 300_000], help="postings of history"
    )
    # Small defaults, so that ``make bench`` stays short; docs/benchmarks.md's figures: 1 M and
    # 10 M, 10,000 new postings and earnings, 200 owners and renters.
    parser.add_argument("--new", type=int, default=5_000, help="new postings to reconcile")
    parser.add_argument("--earnings", type=int, default=5_000, help="new earnings postings")
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--renters", type=int, default=100)
    args = parser.parse_args(argv)
    if sorted(args.sizes) != args.sizes:
        parser.error("--sizes must grow")
    django_setup()
    from django.conf import settings
    from django.db import connection

    if not settings.IS_POSTGRES:
        print("ledger_history: skipped, needs PostgreSQL (set DATABASE_URL)")
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        row = cursor.fetchone()
    if not (row and row[0]):
        print("ledger_history: skipped, loading the history needs a superuser")
        return 0
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 0
    with scratch_database("bench_history"):
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()
        label = f"PostgreSQL {version[0].split()[0] if version else '?'}"
        rows = measure(
            args.sizes,
            new=args.new,
            earnings=args.earnings,
            owners=args.owners,
            renters=args.renters,
        )
        _report(rows, label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
