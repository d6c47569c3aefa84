"""Charges per second through ``hold_capture`` beside plain SQL writing the same rows.

Both paths write, per charge, exactly what a usage charge is in the database: one transaction
row (same key shape, kind and metadata), three postings (escrow, host earnings, revenue shard)
and three balance updates, each charge committed on its own, on the same accounts of the same
database in the same run, so the triggers, constraints and indexes cost both the same. The
plain-SQL path is the physical baseline: psycopg straight on the connection, three statements
(insert the transaction, insert the postings, update the balances in one statement) and a
commit, with no checks. The service also locks the accounts (SELECT … FOR UPDATE), checks the
idempotency key and the escrow, and goes through Django.

Run: ``python -m bench.ledger [--charges N] [--jobs N] [--threads N]`` on PostgreSQL
(``DATABASE_URL``). It uses a scratch database and drops it afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench._django import django_setup, scratch_database

GROSS, FEE = 1_000, 100


@dataclass(frozen=True)
class Fixture:
    owners: dict[int, int]  # job -> host owner id
    hosts: dict[int, int]  # job -> host id (a plain number: the ledger knows hosts only by id)
    jobs: list[int]
    # Per job: (escrow, earnings_pending, revenue shard) account ids.
    accounts: dict[int, tuple[int, int, int]]


@dataclass
class Timing:
    charges: int = 0
    seconds: float = 0.0
    # Of which this process was on the CPU (Python, Django, psycopg); the rest is waiting for
    # the database.
    cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.charges / self.seconds if self.seconds else 0.0


def _fixture(jobs: int, owners: int, charges: int) -> Fixture:
    """A renter with ``jobs`` held jobs on the hosts of ``owners`` owners, all accounts warm."""
    from accounts.models import User
    from config.transactions import durable_call
    from ledger.models import AccountKind
    from ledger.services import hold_capture, hold_place, wallet_credit

    renter = User.objects.create_user(username="bench-renter", email="renter@bench.invalid")
    hosts = [
        User.objects.create_user(username=f"bench-owner-{n}", email=f"owner{n}@bench.invalid")
        for n in range(owners)
    ]
    per_job = (charges * 4 // jobs + 10) * GROSS  # both paths, every round, with room to spare
    durable_call(
        wallet_credit, user=renter, amount_micros=per_job * jobs, key="bench:buy", reason="bench"
    )
    accounts: dict[int, tuple[int, int, int]] = {}
    owner_of: dict[int, int] = {}
    for job in range(1, jobs + 1):
        owner_of[job] = hosts[job % owners].pk
        durable_call(
            hold_place, user=renter, job_id=job, amount_micros=per_job, key=f"bench:hold:{job}"
        )
        # The first charge creates the owner's and the shard's accounts; time only warm ones.
        txn = durable_call(
            hold_capture,
            job_id=job,
            attempt=1,
            host_owner=owner_of[job],
            gross_micros=GROSS,
            fee_micros=FEE,
            key=f"bench:warm:{job}",
            host_id=_host_of(job, owners),
        )
        by_kind = {p.account.kind: p.account_id for p in txn.postings.select_related("account")}
        accounts[job] = (
            by_kind[AccountKind.ESCROW],
            by_kind[AccountKind.EARNINGS_PENDING],
            by_kind[AccountKind.REVENUE],
        )
    host_of = {job: _host_of(job, owners) for job in owner_of}
    return Fixture(owners=owner_of, hosts=host_of, jobs=list(range(1, jobs + 1)), accounts=accounts)


def _host_of(job: int, owners: int) -> int:
    """Each owner has one host; metering names it in every charge (``host_id``)."""
    return 1_000 + job % owners


def _metadata(job: int, owner_id: int, host_id: int) -> str:
    return json.dumps(
        {
            "job_id": job,
            "attempt": 1,
            "host_owner_id": owner_id,
            "gross_micros": GROSS,
            "fee_micros": FEE,
            "host_id": host_id,
        }
    )


_INSERT_TXN = (
    "INSERT INTO ledger_ledgertransaction"
    " (key, kind, memo, created_at, job_id, attempt, host_id, metadata)"
    " VALUES (%s, 'capture', '', now(), %s, 1, %s, %s) RETURNING id"
)
_INSERT_POSTINGS = (
    "INSERT INTO ledger_posting (transaction_id, account_id, amount_micros)"
    " VALUES (%s, %s, %s), (%s, %s, %s), (%s, %s, %s)"
)
_UPDATE_BALANCES = (
    "UPDATE ledger_account SET balance_micros = balance_micros + v.delta"
    " FROM (VALUES (%s::bigint, %s::bigint), (%s, %s), (%s, %s)) AS v(id, delta)"
    " WHERE ledger_account.id = v.id"
)


def _raw_worker(fixture: Fixture, keys: Sequence[int], tag: str) -> None:
    """Plain SQL on a connection of this thread, one commit per charge."""
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    raw.autocommit = True
    with raw.cursor() as cursor:
        for i in keys:
            job = fixture.jobs[i % len(fixture.jobs)]
            escrow, pending, revenue = fixture.accounts[job]
            with raw.transaction():
                host, owner = fixture.hosts[job], fixture.owners[job]
                cursor.execute(
                    _INSERT_TXN, (f"bench:{tag}:{i}", job, host, _metadata(job, owner, host))
                )
                row = cursor.fetchone()
                assert row is not None
                txn = row[0]
                cursor.execute(
                    _INSERT_POSTINGS,
                    (txn, escrow, -GROSS, txn, pending, GROSS - FEE, txn, revenue, FEE),
                )
                cursor.execute(
                    _UPDATE_BALANCES, (escrow, -GROSS, pending, GROSS - FEE, revenue, FEE)
                )


def _service_worker(fixture: Fixture, keys: Sequence[int], tag: str) -> None:
    from config.transactions import durable_call
    from ledger.services import hold_capture

    for i in keys:
        job = fixture.jobs[i % len(fixture.jobs)]
        durable_call(
            hold_capture,
            job_id=job,
            attempt=1,
            host_owner=fixture.owners[job],
            gross_micros=GROSS,
            fee_micros=FEE,
            key=f"bench:{tag}:{i}",
            host_id=fixture.hosts[job],
        )


Worker = Callable[[Fixture, Sequence[int], str], None]


def _timed(worker: Worker, fixture: Fixture, keys: range, tag: str, threads: int) -> Timing:
    from django.db import connections

    def run(part: Sequence[int]) -> None:
        try:
            worker(fixture, part, tag)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=run, args=(keys[t::threads],)) for t in range(threads)]
    start, cpu_start = time.perf_counter(), time.process_time()
    if threads == 1:
        worker(fixture, keys, tag)
    else:
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    return Timing(
        len(keys), time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start
    )


def _statements_per_charge(fixture: Fixture) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from config.transactions import durable_call
    from ledger.services import hold_capture

    with CaptureQueriesContext(connection) as captured:
        durable_call(
            hold_capture,
            job_id=fixture.jobs[0],
            attempt=1,
            host_owner=fixture.owners[fixture.jobs[0]],
            gross_micros=GROSS,
            fee_micros=FEE,
            key="bench:count",
            host_id=fixture.hosts[fixture.jobs[0]],
        )
    return sum(1 for q in captured.captured_queries if q["sql"] not in {"BEGIN", "COMMIT"})


def measure(
    charges: int, jobs: int, owners: int, threads: int, rounds: int
) -> tuple[Timing, Timing, int]:
    """Alternate rounds of both paths (so that drift in the machine hits both alike)."""
    fixture = _fixture(jobs, owners, charges)
    raw, service = Timing(), Timing()
    per_round = charges // rounds
    for r in range(rounds):
        keys = range(r * per_round, (r + 1) * per_round)
        for total, worker, tag in ((raw, _raw_worker, "raw"), (service, _service_worker, "svc")):
            timing = _timed(worker, fixture, keys, tag, threads)
            total.charges += timing.charges
            total.seconds += timing.seconds
            total.cpu_seconds += timing.cpu_seconds
    return raw, service, _statements_per_charge(fixture)


def _report(raw: Timing, service: Timing, statements: int, threads: int, version: str) -> None:
    print(f"ledger: usage charges on {version}, {threads} thread(s), one commit per charge")
    header = f"{'path':<34}{'charges':>8}{'seconds':>9}{'charges/s':>11}"
    print(f"{header}{'client CPU µs/charge':>22}{'statements':>12}")
    for label, timing, count in (
        ("plain SQL, same rows (baseline)", raw, "3"),
        ("hold_capture (service)", service, str(statements)),
    ):
        cpu = timing.cpu_seconds / timing.charges * 1e6
        print(
            f"{label:<34}{timing.charges:>8}{timing.seconds:>9.2f}{timing.rate:>11,.0f}"
            f"{cpu:>22,.0f}{count:>12}"
        )
    print(f"{'ratio service / baseline':<34}{service.rate / raw.rate:>28.2f}")


def _check_clean() -> None:
    from ledger.providers import providers
    from ledger.services import ledger_reconcile

    # The bench's jobs are plain numbers (no job rows): the ledger's own invariants only.
    providers.job_facts = None
    report = ledger_reconcile()
    if not report.is_clean:
        raise SystemExit(f"the ledger is not consistent after the run: {report.problems[:5]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__)
    parser.add_argument("--charges", type=int, default=6000, help="charges per path")
    parser.add_argument("--jobs", type=int, default=50, help="jobs the charges spread over")
    parser.add_argument("--owners", type=int, default=10, help="host owners of those jobs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    django_setup()
    from django.conf import settings
    from django.db import connection

    if not settings.IS_POSTGRES:
        print("ledger: skipped, needs PostgreSQL (set DATABASE_URL)")
        return 0
    with scratch_database("bench"):
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            row = cursor.fetchone()
        version = f"PostgreSQL {row[0].split()[0] if row else '?'}"
        raw, service, statements = measure(
            args.charges, args.jobs, args.owners, args.threads, args.rounds
        )
        _report(raw, service, statements, args.threads, version)
        _check_clean()
    return 0


if __name__ == "__main__":
    sys.exit(main())
