"""The statements of reconciliation's kept sums (ledger.services.reconcile).

Written as SQL: they sum postings by an id range, per account and by transaction kind, and
join the kept sums, which the ORM can't say in one statement. They run on PostgreSQL and SQLite
alike. Only names from our own models are formatted into them; every value is a parameter, and
each function returns its statement with its parameters.
"""

# This module formats SQL from our own table names only; values are always parameters.
# ruff: noqa: S608

from __future__ import annotations

from typing import Any

from django.db import connection

from ledger.models import Account, LedgerTransaction, Posting, ReconciledAccount, TransactionKind

# The sums kept per account besides their total, and the transaction kinds each one adds up.
SPLITS: dict[str, tuple[str, ...]] = {
    "matured": (TransactionKind.MATURITY,),
    "payouts": (TransactionKind.PAYOUT, TransactionKind.PAYOUT_REVERSAL),
    "charged": (TransactionKind.CAPTURE, TransactionKind.REVERSAL),
}
SUMS = ("postings", *SPLITS)

_POSTINGS, _TRANSACTIONS = Posting._meta.db_table, LedgerTransaction._meta.db_table
_ACCOUNTS, _KEPT = Account._meta.db_table, ReconciledAccount._meta.db_table


def _sum_columns(prefix: str, condition: str = "") -> tuple[list[str], list[Any]]:
    """``SUM`` of w.amount_micros, in all and per split, of the rows meeting ``condition``."""
    where = f"{condition} AND " if condition else ""
    columns = [
        f"SUM(CASE WHEN {condition} THEN w.amount_micros ELSE 0 END) AS {prefix}postings"
        if condition
        else f"SUM(w.amount_micros) AS {prefix}postings"
    ]
    params: list[Any] = []
    for name, kinds in SPLITS.items():
        marks = ", ".join(["%s"] * len(kinds))
        columns.append(
            f"SUM(CASE WHEN {where}w.kind IN ({marks}) THEN w.amount_micros ELSE 0 END) "
            f"AS {prefix}{name}"
        )
        params += kinds
    return columns, params


def _fence() -> str:
    """Keeps PostgreSQL from inlining the subquery that looks each kind up: inlined, the lookup
    would run once per ``CASE`` that reads the kind instead of once per posting."""
    return " OFFSET 0" if connection.vendor == "postgresql" else ""


def touched(since: int, through: int) -> tuple[str, list[Any]]:
    """Each account with a posting after ``since``: its balance and owner; its kept sums plus
    all those postings (the rebuilt balance and splits) and how many there were; its kept sums
    plus those up to ``through`` only (their new values, once taken in), and how many.

    An index range on the postings' id, however many there are before it. Each posting's
    transaction kind is looked up by primary key (a correlated subquery, not a join: from its
    statistics the planner can't know how few postings lie after the checkpoint and may hash
    the whole transactions table to join them)."""
    all_columns, all_params = _sum_columns("")
    early_columns, early_params = _sum_columns("early_", "w.early = 1")
    rebuilt = ", ".join(f"COALESCE(r.{name}_micros, 0) + w.{name}" for name in SUMS)
    early = ", ".join(f"COALESCE(r.{name}_micros, 0) + w.early_{name}" for name in SUMS)
    statement = (
        "SELECT a.id, a.kind, a.user_id, a.job_id, a.shard, a.balance_micros, "
        f"a.must_not_be_negative, {rebuilt}, w.lines, {early}, w.early_lines "
        f"FROM (SELECT w.account_id, {', '.join(all_columns + early_columns)}, "
        "COUNT(*) AS lines, SUM(w.early) AS early_lines "
        "FROM (SELECT p.account_id, p.amount_micros, "
        "CASE WHEN p.id <= %s THEN 1 ELSE 0 END AS early, "
        f"(SELECT t.kind FROM {_TRANSACTIONS} t WHERE t.id = p.transaction_id) AS kind "
        f"FROM {_POSTINGS} p WHERE p.id > %s{_fence()}) w GROUP BY w.account_id) w "
        f"JOIN {_ACCOUNTS} a ON a.id = w.account_id "
        f"LEFT JOIN {_KEPT} r ON r.account_id = w.account_id ORDER BY a.id"
    )
    return statement, [*all_params, *early_params, through, since]


def window_transactions(
    since: int, since_transaction: int, *, limit: int | None = None
) -> tuple[str, list[Any]]:
    """The transactions with a posting after ``since`` or an id after ``since_transaction``:
    how many (``limit`` None), or at most ``limit`` of those that are not balanced. Each one's
    postings are summed through the index on their transaction (correlated subqueries, for the
    reason ``touched`` gives)."""
    ids = (
        f"WITH ids AS (SELECT transaction_id AS id FROM {_POSTINGS} WHERE id > %s "
        f"UNION SELECT id FROM {_TRANSACTIONS} WHERE id > %s) "
    )
    if limit is None:
        return f"{ids}SELECT COUNT(*) FROM ids", [since, since_transaction]
    statement = (
        f"{ids}, sums AS (SELECT ids.id AS id, "
        f"(SELECT COALESCE(SUM(p.amount_micros), 0) FROM {_POSTINGS} p "
        "WHERE p.transaction_id = ids.id) AS total, "
        f"(SELECT COUNT(*) FROM {_POSTINGS} p WHERE p.transaction_id = ids.id) AS lines "
        "FROM ids) "
        f"SELECT s.id, (SELECT t.key FROM {_TRANSACTIONS} t WHERE t.id = s.id), s.total, s.lines "
        "FROM sums s WHERE s.total <> 0 OR s.lines < 2 ORDER BY s.id LIMIT %s"
    )
    return statement, [since, since_transaction, limit]


def kept_rebuild(through: int, *, settled: bool) -> tuple[str, list[Any]]:
    """Fill the (emptied) kept sums with every posting up to ``through``, new rows' job marked
    ``settled``. A join, not lookups: this reads the whole ledger, and hashing it is right."""
    columns, params = _sum_columns("")
    names = ", ".join(f"{name}_micros" for name in SUMS)
    statement = (
        f"INSERT INTO {_KEPT} (account_id, job_id, {names}, job_settled) "
        f"SELECT w.account_id, a.job_id, {', '.join(f'w.{name}' for name in SUMS)}, %s "
        f"FROM (SELECT w.account_id, {', '.join(columns)} "
        "FROM (SELECT p.account_id, p.amount_micros, t.kind "
        f"FROM {_POSTINGS} p JOIN {_TRANSACTIONS} t ON t.id = p.transaction_id "
        "WHERE p.id <= %s) w GROUP BY w.account_id) w "
        f"JOIN {_ACCOUNTS} a ON a.id = w.account_id"
    )
    return statement, [settled, *params, through]


def kept_write(cursor: Any, rows: list[tuple[int, int | None, list[int]]]) -> None:
    """Write kept sums (account, job, sums in ``SUMS`` order), replacing an account's row: one
    statement of arrays on PostgreSQL (a few hundred rows, no per-row SQL to build), many on
    SQLite."""
    names = [f"{name}_micros" for name in SUMS]
    columns = ", ".join(["account_id", "job_id", *names, "job_settled"])
    replace = ", ".join(f"{name} = excluded.{name}" for name in names)
    if not rows:
        return
    if connection.vendor == "postgresql":
        arrays = ", ".join(["%s::bigint[]"] * (2 + len(SUMS)))
        cursor.execute(
            f"INSERT INTO {_KEPT} ({columns}) SELECT *, false FROM unnest({arrays}) "
            f"ON CONFLICT (account_id) DO UPDATE SET {replace}",
            [
                [row[0] for row in rows],
                [row[1] for row in rows],
                *([row[2][n] for row in rows] for n in range(len(SUMS))),
            ],
        )
        return
    marks = ", ".join(["%s"] * (3 + len(SUMS)))
    cursor.executemany(
        f"INSERT INTO {_KEPT} ({columns}) VALUES ({marks}) "
        f"ON CONFLICT (account_id) DO UPDATE SET {replace}",
        [(account, job, *sums, False) for account, job, sums in rows],
    )
