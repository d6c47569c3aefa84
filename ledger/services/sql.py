"""The statements of the posting hot path, written as SQL rather than built by the ORM.

A usage charge runs these for every report of every running job; building them through the
ORM cost more time than the database spent on them (docs/benchmarks.md). The SQL text depends
only on the *shape* of a transaction (which account kinds, how many legs), so it is built once
per shape and cached; only names from our own models and our own kind constants are formatted
into it, every value is a parameter. Only ``ledger.services.posting`` calls this module.

On PostgreSQL a transaction is written in one statement (data-modifying CTEs: claim the key,
insert the postings, move the balances); elsewhere (SQLite) in three.
"""

# This module formats SQL from our own table names and kind constants only; values are always
# parameters. Ruff's S608 can't tell, so it is off here (and only here).
# ruff: noqa: S608

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Field

from ledger.models import (
    ORGANISATION_KINDS,
    USER_KINDS,
    Account,
    AccountKind,
    LedgerTransaction,
    Posting,
)

ACCOUNT_COLUMNS = (
    "id",
    "kind",
    "user_id",
    "organisation_id",
    "job_id",
    "shard",
    "balance_micros",
    "must_not_be_negative",
)


def _owner_column(kind: str) -> str:
    if kind in USER_KINDS:
        return "user_id"
    if kind in ORGANISATION_KINDS:
        return "organisation_id"
    if kind == AccountKind.ESCROW:
        return "job_id"
    return "shard"


def _owner_condition(kind: str, *, is_array: bool = False) -> str:
    # The kind is written into the SQL (it is one of our constants) so that the planner can use
    # the partial unique indexes, whose predicates name the kinds; the owner is a parameter.
    owner = "= ANY(%s)" if is_array else "= %s"
    return f"(kind = '{AccountKind(kind).value}' AND {_owner_column(kind)} {owner})"


@cache
def _lock_sql(kinds: tuple[str, ...], vendor: str) -> str:
    where = " OR ".join(_owner_condition(kind) for kind in kinds)
    # SQLite has no row locks: there a transaction takes the database's write lock when it
    # begins (settings: transaction_mode IMMEDIATE).
    lock = " FOR NO KEY UPDATE" if vendor == "postgresql" else ""
    table = Account._meta.db_table
    return f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM {table} WHERE {where} ORDER BY id{lock}"


@cache
def _lock_grouped_sql(kinds: tuple[str, ...]) -> str:
    # One "owner = ANY(array)" per kind: the same text however many accounts a batch locks.
    where = " OR ".join(_owner_condition(kind, is_array=True) for kind in kinds)
    table = Account._meta.db_table
    columns = ", ".join(ACCOUNT_COLUMNS)
    return f"SELECT {columns} FROM {table} WHERE {where} ORDER BY id FOR NO KEY UPDATE"


# A batch (holds_capture_many) names hundreds of accounts; past this many, PostgreSQL gets one
# array per kind instead of one condition per account.
GROUPED_LOCK_FROM = 8


def accounts_select_locked(owners: Sequence[tuple[str, int]]) -> list[Account]:
    """Lock (kind, owner number) accounts, in pk order; those that exist, as Account rows."""
    params: list[int] | list[list[int]]
    if connection.vendor == "postgresql" and len(owners) > GROUPED_LOCK_FROM:
        by_kind: dict[str, list[int]] = {}
        for kind, owner in owners:
            by_kind.setdefault(kind, []).append(owner)
        kinds = tuple(sorted(by_kind))
        query, params = _lock_grouped_sql(kinds), [by_kind[kind] for kind in kinds]
    else:
        query = _lock_sql(tuple(kind for kind, _owner in owners), connection.vendor)
        params = [owner for _kind, owner in owners]
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        rows = cursor.fetchall()
    accounts = [Account.from_db(connection.alias, ACCOUNT_COLUMNS, row) for row in rows]
    for account in accounts:
        account.must_not_be_negative = bool(account.must_not_be_negative)  # SQLite: 0/1
    return accounts


_TRANSACTION_FIELDS = (
    "key",
    "kind",
    "memo",
    "created_at",
    "created_by",
    "job_id",
    "attempt",
    "host_id",
    "metadata",
)


@cache
def _transaction_fields() -> list[Field[Any, Any]]:
    fields: list[Field[Any, Any]] = []
    for name in _TRANSACTION_FIELDS:
        column = LedgerTransaction._meta.get_field(name)
        assert isinstance(column, Field)
        fields.append(column)
    return fields


def _claim_sql() -> str:
    # INSERT … ON CONFLICT DO NOTHING RETURNING id: Django's bulk_create can't do this (with
    # ignore_conflicts it returns no id; update_conflicts would UPDATE the first row, which the
    # append-only trigger refuses). A racing insert of the same key waits for the first to end.
    table = LedgerTransaction._meta.db_table
    columns = ", ".join(f'"{column.column}"' for column in _transaction_fields())
    placeholders = ", ".join(["%s"] * len(_transaction_fields()))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
        'ON CONFLICT ("key") DO NOTHING RETURNING id'
    )


@cache
def _write_sql_postgres(legs: int, moving: int) -> str:
    lines = ", ".join(["(%s, %s::bigint, %s::bigint)"] * legs)
    postings, accounts = Posting._meta.db_table, Account._meta.db_table
    parts = [
        f"WITH txn AS ({_claim_sql()})",
        f"lines AS (INSERT INTO {postings} (transaction_id, account_id, amount_micros) "
        f"SELECT txn.id, line.account_id, line.amount FROM txn, (VALUES {lines}) "
        "AS line(n, account_id, amount) ORDER BY line.n)",
    ]
    if moving:
        deltas = ", ".join(["(%s::bigint, %s::bigint)"] * moving)
        parts.append(
            f"moved AS (UPDATE {accounts} SET balance_micros = balance_micros + delta.amount "
            f"FROM txn, (VALUES {deltas}) AS delta(account_id, amount) "
            f"WHERE {accounts}.id = delta.account_id)"
        )
    return ", ".join(parts) + " SELECT id FROM txn"


@cache
def _postings_sql(legs: int) -> str:
    values = ", ".join(["(%s, %s, %s)"] * legs)
    return (
        f"INSERT INTO {Posting._meta.db_table} "
        f"(transaction_id, account_id, amount_micros) VALUES {values}"
    )


@cache
def _balances_sql(moving: int) -> str:
    cases = " ".join(["WHEN %s THEN %s"] * moving)
    ids = ", ".join(["%s"] * moving)
    return (
        f"UPDATE {Account._meta.db_table} "
        f"SET balance_micros = balance_micros + CASE id {cases} ELSE 0 END WHERE id IN ({ids})"
    )


def transaction_write(
    txn: LedgerTransaction, legs: Sequence[tuple[int, int]], deltas: Mapping[int, int]
) -> int | None:
    """Write ``txn`` with its postings and move the balances; None (and nothing written) when
    its key exists. The caller holds the locks of every account in ``deltas``."""
    claim = [
        column.get_db_prep_save(getattr(txn, column.attname), connection)
        for column in _transaction_fields()
    ]
    moving = [(pk, delta) for pk, delta in deltas.items() if delta]
    lines = [(n, pk, amount) for n, (pk, amount) in enumerate(legs)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                _write_sql_postgres(len(lines), len(moving)),
                [*claim, *(v for line in lines for v in line), *(v for m in moving for v in m)],
            )
            row = cursor.fetchone()
            return None if row is None else int(row[0])
        cursor.execute(_claim_sql(), claim)
        row = cursor.fetchone()
        if row is None:
            return None
        txn_id = int(row[0])
        cursor.execute(_postings_sql(len(legs)), [v for leg in legs for v in (txn_id, *leg)])
        if moving:
            cursor.execute(
                _balances_sql(len(moving)),
                [*(v for m in moving for v in m), *(pk for pk, _delta in moving)],
            )
        return txn_id


def _is_json(column: Field[Any, Any]) -> bool:
    return column.get_internal_type() == "JSONField"


@cache
def _write_many_sql_postgres() -> str:
    # Arrays rather than VALUES lists: one statement text, however many transactions a batch
    # has. JSON travels as text and is cast per row (there is no array of Jsonb adapters).
    fields = _transaction_fields()
    columns = ", ".join(f'"{column.column}"' for column in fields)
    arrays = ", ".join(
        "%s::text[]" if _is_json(column) else f"%s::{column.db_type(connection)}[]"
        for column in fields
    )
    names = ", ".join(f"c{n}" for n in range(len(fields)))
    selected = ", ".join(
        f"t.c{n}::jsonb" if _is_json(column) else f"t.c{n}" for n, column in enumerate(fields)
    )
    transactions, postings = LedgerTransaction._meta.db_table, Posting._meta.db_table
    accounts = Account._meta.db_table
    claimed = "FROM txn JOIN line ON line.key = txn.key"
    return (
        f"WITH txn AS (INSERT INTO {transactions} ({columns}) "
        f"SELECT {selected} FROM unnest({arrays}) WITH ORDINALITY AS t({names}, n) "
        'ORDER BY t.n ON CONFLICT ("key") DO NOTHING RETURNING id, "key"), '
        "line AS (SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) "
        "WITH ORDINALITY AS line(key, account_id, amount, n)), "
        f"lines AS (INSERT INTO {postings} (transaction_id, account_id, amount_micros) "
        f"SELECT txn.id, line.account_id, line.amount {claimed} ORDER BY line.n), "
        f"moved AS (UPDATE {accounts} SET balance_micros = balance_micros + delta.amount "
        f"FROM (SELECT line.account_id, SUM(line.amount)::bigint AS amount {claimed} "
        f"GROUP BY line.account_id) AS delta WHERE {accounts}.id = delta.account_id) "
        "SELECT id, key FROM txn"
    )


def _column_values(txn: LedgerTransaction, column: Field[Any, Any]) -> Any:
    value = getattr(txn, column.attname)
    if _is_json(column):
        return json.dumps(value)
    return column.get_db_prep_save(value, connection)


def transactions_write_many(
    written: Sequence[tuple[LedgerTransaction, Sequence[tuple[int, int]]]],
) -> dict[str, int]:
    """Write many transactions with their postings and move the balances; returns the id of
    each one written, by key. A transaction whose key exists is left out (nothing of it is
    written). Keys must be distinct. The caller holds the locks of every account moved."""
    if not written:
        return {}
    if connection.vendor != "postgresql":
        ids: dict[str, int] = {}
        for txn, legs in written:
            deltas: dict[int, int] = {}
            for pk, amount in legs:
                deltas[pk] = deltas.get(pk, 0) + amount
            txn_id = transaction_write(txn, legs, deltas)
            if txn_id is not None:
                ids[txn.key] = txn_id
        return ids
    fields = _transaction_fields()
    columns = [[_column_values(txn, column) for txn, _legs in written] for column in fields]
    lines = [(txn.key, pk, amount) for txn, legs in written for pk, amount in legs]
    with connection.cursor() as cursor:
        cursor.execute(
            _write_many_sql_postgres(),
            [*columns, *([line[i] for line in lines] for i in range(3))],
        )
        return {key: int(txn_id) for txn_id, key in cursor.fetchall()}
