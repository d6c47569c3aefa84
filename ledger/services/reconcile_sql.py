"""The statements of reconciliation's incremental runs (ledger.services.reconcile).

Written as SQL: they sum postings by an id range and join the kept sums, which the ORM can't
say in one statement. They run on PostgreSQL and SQLite alike. Only names from our own models
are formatted into them; every value is a parameter.
"""

# This module formats SQL from our own table names only; values are always parameters.
# ruff: noqa: S608

from __future__ import annotations

from ledger.models import Account, LedgerTransaction, Posting, ReconciledAccount, TransactionKind

# The kinds whose postings the kept sums split out, in the order of ``sums``' parameters.
SUM_KINDS = [
    TransactionKind.MATURITY,
    TransactionKind.PAYOUT,
    TransactionKind.PAYOUT_REVERSAL,
    TransactionKind.CAPTURE,
    TransactionKind.REVERSAL,
]


def sums(*, bounded: bool) -> str:
    """Per account: the postings with an id above a bound (and up to another): their sum, by
    the kinds the invariants need, and how many. Parameters: ``SUM_KINDS``, then the bounds.
    An index range on the postings' id, however many there are before it."""
    postings, transactions = Posting._meta.db_table, LedgerTransaction._meta.db_table
    upper = " AND p.id <= %s" if bounded else ""
    return (
        "SELECT p.account_id AS account_id, SUM(p.amount_micros) AS postings, "
        "SUM(CASE WHEN t.kind = %s THEN p.amount_micros ELSE 0 END) AS matured, "
        "SUM(CASE WHEN t.kind IN (%s, %s) THEN p.amount_micros ELSE 0 END) AS payouts, "
        "SUM(CASE WHEN t.kind IN (%s, %s) THEN p.amount_micros ELSE 0 END) AS charged, "
        "COUNT(*) AS lines "
        f"FROM {postings} p JOIN {transactions} t ON t.id = p.transaction_id "
        f"WHERE p.id > %s{upper} GROUP BY p.account_id"
    )


def touched() -> str:
    """Each account with a posting after the checkpoint: its balance and owner, what its kept
    sums plus those postings come to, and how many there were. Parameters: ``SUM_KINDS``, the
    checkpoint."""
    accounts, kept = Account._meta.db_table, ReconciledAccount._meta.db_table
    return (
        "SELECT a.id, a.kind, a.user_id, a.job_id, a.shard, a.balance_micros, "
        "a.must_not_be_negative, COALESCE(r.postings_micros, 0) + w.postings, "
        "COALESCE(r.matured_micros, 0) + w.matured, COALESCE(r.payouts_micros, 0) + w.payouts, "
        "COALESCE(r.charged_micros, 0) + w.charged, w.lines "
        f"FROM ({sums(bounded=False)}) w JOIN {accounts} a ON a.id = w.account_id "
        f"LEFT JOIN {kept} r ON r.account_id = w.account_id ORDER BY a.id"
    )


def window_transactions(*, count: bool) -> str:
    """The transactions with a posting after the checkpoint or an id after its transaction id:
    how many, or those that are not balanced. Parameters: the posting and transaction ids of
    the checkpoint (and how many to list)."""
    postings, transactions = Posting._meta.db_table, LedgerTransaction._meta.db_table
    ids = (
        f"WITH ids AS (SELECT transaction_id AS id FROM {postings} WHERE id > %s "
        f"UNION SELECT id FROM {transactions} WHERE id > %s) "
    )
    if count:
        return f"{ids}SELECT COUNT(*) FROM ids"
    return (
        f"{ids}SELECT t.id, t.key, COALESCE(SUM(p.amount_micros), 0), COUNT(p.id) "
        f"FROM ids JOIN {transactions} t ON t.id = ids.id "
        f"LEFT JOIN {postings} p ON p.transaction_id = t.id GROUP BY t.id, t.key "
        "HAVING COALESCE(SUM(p.amount_micros), 0) <> 0 OR COUNT(p.id) < 2 "
        "ORDER BY t.id LIMIT %s"
    )


def sums_add(*, conflict: bool) -> str:
    """Add the postings in (lower, upper] to the kept sums. Parameters: job_settled for new
    rows, ``SUM_KINDS``, lower, upper."""
    accounts, kept = Account._meta.db_table, ReconciledAccount._meta.db_table
    names = ("postings", "matured", "payouts", "charged")
    insert = (
        f"INSERT INTO {kept} (account_id, job_id, {', '.join(f'{n}_micros' for n in names)}, "
        f"job_settled) SELECT w.account_id, a.job_id, {', '.join(f'w.{n}' for n in names)}, %s "
        f"FROM ({sums(bounded=True)}) w JOIN {accounts} a ON a.id = w.account_id "
        # SQLite needs a WHERE before ON CONFLICT to tell it from a join's ON.
        "WHERE 1 = 1"
    )
    if not conflict:
        return insert
    added = ", ".join(f"{n}_micros = {kept}.{n}_micros + excluded.{n}_micros" for n in names)
    return f"{insert} ON CONFLICT (account_id) DO UPDATE SET {added}"
