"""The safe horizon: the highest posting and transaction ids below which nothing can still
commit (docs/ledger.md, "The safe horizon").

Ids are drawn from sequences when a row is inserted, but transactions commit in their own
order: a charge that drew posting 41 may commit after the one that drew 42. A reader that
simply remembered "I have seen up to 42" would never look at 41. So the periodic jobs that keep
a high-water mark (reconciliation, maturity's list of owners) only ever advance it to a horizon
taken like this, on PostgreSQL:

1. read the highest ids committed (``MAX(id)``, index-backed);
2. take a transaction id of our own, ``pg_current_xact_id()``, *after* that read;
3. wait until no transaction of this database older than ours is still running (its
   ``backend_xid`` in ``pg_stat_activity``, or a prepared one in ``pg_prepared_xacts``;
   both are readable by any role).

Every posting and ledger transaction is written by ``ledger.services.sql`` after the posting
service locked its accounts (``SELECT … FOR NO KEY UPDATE``), and a row lock gives the writer
its transaction id; so a writer holding an id up to those read in step 1 drew it before step 1
and got its transaction id before ours. Once every transaction older than ours has ended, each
of those ids is committed (and visible to every later statement) or rolled back for good.
That is what ``pg_snapshot_xmin(pg_current_snapshot())`` >= ours says too, but for the whole
cluster: a transaction left open in another database (another application, a test run) would
hold the horizon back although it can't hold our ids, so step 3 looks at this database only.
Waiting takes milliseconds (a charge's transaction is short). When a transaction older than ours
is still open after ``wait_seconds`` (a stuck or very long transaction, or the caller's own
transaction already holding a transaction id), there is no horizon this time: the caller keeps
its old mark and reads a little more next time, never less.

On SQLite a writer holds the database's write lock from its first statement to its commit
(``BEGIN IMMEDIATE``) and ids are ``MAX + 1`` under that lock, so ids commit in order and the
highest committed ids are the horizon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import connection
from django.db.models import Max

from ledger.models import LedgerTransaction, Posting

# Between two looks at the oldest running transaction.
_POLL_FIRST, _POLL_MOST = 0.002, 0.05


@dataclass(frozen=True)
class Horizon:
    """No posting (transaction) with an id up to these can still commit."""

    posting_id: int
    transaction_id: int


def _highest_ids() -> tuple[int, int]:
    posting_id = Posting.objects.aggregate(top=Max("pk"))["top"]
    transaction_id = LedgerTransaction.objects.aggregate(top=Max("pk"))["top"]
    return int(posting_id or 0), int(transaction_id or 0)


_OLDER_RUNNING = """
SELECT EXISTS (
    SELECT 1 FROM pg_stat_activity
    WHERE datname = current_database() AND age(backend_xid) > age(%(xid)s::xid)
    UNION ALL
    SELECT 1 FROM pg_prepared_xacts
    WHERE database = current_database() AND age(transaction) > age(%(xid)s::xid)
)
"""


def _older_running(xid: str) -> bool:
    """Is a transaction of this database older than ``xid`` still running? (``age`` compares
    transaction ids across their wraparound; the statistics snapshot is cleared first, or a
    transaction would see the same answer every time.)"""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(_OLDER_RUNNING, {"xid": xid})
        (running,) = cursor.fetchone()
    return bool(running)


def horizon_take(*, wait_seconds: float) -> Horizon | None:
    """The safe horizon now; None when it can't be established within ``wait_seconds``.

    Call it before the transaction that will use it writes anything: on PostgreSQL, inside a
    transaction that already holds a transaction id (one that wrote, or locked a row), the
    order of steps 1 and 2 can't be guaranteed and the answer is None.
    """
    posting_id, transaction_id = _highest_ids()
    horizon = Horizon(posting_id, transaction_id)
    if connection.vendor != "postgresql":
        return horizon
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id_if_assigned()::text")
        (assigned,) = cursor.fetchone()
        if assigned is not None:
            return None
        # In autocommit this is a transaction of its own that ends at once; inside the caller's
        # transaction it is that transaction's id (which the oldest running one may equal).
        cursor.execute("SELECT pg_current_xact_id()::xid::text")
        (barrier,) = cursor.fetchone()
    deadline = time.monotonic() + wait_seconds
    pause = _POLL_FIRST
    while _older_running(barrier):
        if time.monotonic() >= deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, _POLL_MOST)
    return horizon
