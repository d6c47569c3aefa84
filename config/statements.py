"""Querysets compiled once per shape, then run with each request's own values (issue 17).

Building a queryset and compiling it to SQL was about a third of what Django added to a
catalog page (docs/benchmarks.md "Catalog"), and it is the same work on every request of the
same shape (the same filters given, the same ordering, the same page size). ``compiled`` builds
the queryset once per shape with a sentinel in place of each value that varies, compiles it,
and keeps the SQL with a slot where each sentinel landed among the parameters; each later
request of that shape fills the slots and runs the statement straight, and gets its rows as
dicts (through the fields' own converters, so a row reads as ``values()`` would give it). The
queryset stays the one definition of what is selected; nothing is written twice in SQL.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from threading import Lock
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.models import QuerySet

# Sentinels: integers within a 32-bit column's range (so no lookup folds them away as out of
# range) and far from every constant a statement here holds; one per value, in turn.
_INT_SENTINEL = 1_987_000_000
_DATETIME_SENTINEL = dt.datetime(1901, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
_CACHE_SIZE = 512  # shapes kept per process, least recently used dropped first


@dataclass(frozen=True)
class _Slot:
    name: str
    negated: bool  # the statement holds -value (a keyset comparison turned round)


@dataclass(frozen=True)
class Statement:
    """One compiled SELECT: constants and slots as its parameters, its columns by name."""

    alias: str
    sql: str
    params: tuple[Any, ...]  # a constant, or a _Slot that takes a value
    columns: tuple[str, ...]
    # (column index, the field's converters, its expression): as the ORM applies them
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]

    def execute(self, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        connection = connections[self.alias]
        adapt = connection.ops.adapt_datetimefield_value
        params = []
        for param in self.params:
            if isinstance(param, _Slot):
                value = values[param.name]
                param = -value if param.negated else value
                param = adapt(param) if isinstance(param, dt.datetime) else param
            params.append(param)
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            return rows

    def rows(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The rows for ``values`` (every slot's name), each as ``{column: value}``."""
        connection = connections[self.alias]
        rows = self.execute(values)
        columns = self.columns
        converters = self.converters
        found = []
        for row in rows:
            if converters:
                converted = list(row)
                for index, functions, expression in converters:
                    for function in functions:
                        converted[index] = function(converted[index], expression, connection)
                row = tuple(converted)
            found.append(dict(zip(columns, row, strict=True)))
        return found

    def scalar(self, values: Mapping[str, Any]) -> Any:
        return self.execute(values)[0][0]


_cache: OrderedDict[Hashable, Statement] = OrderedDict()
_lock = Lock()


def compiled(
    shape: Hashable,
    values: Mapping[str, Any],
    build: Callable[[Mapping[str, Any]], QuerySet[Any]],
    *,
    count_limit: int | None = None,
) -> Statement:
    """The statement of ``build(values)`` for every request of ``shape``.

    ``shape`` must hold everything that changes the SQL besides ``values`` (which filters are
    given, booleans that pick a condition, the ordering, the limit). ``values`` are integers,
    strings and aware datetimes; ``build`` uses each as a lookup's value or a ``Value`` (an
    integer may be negated). With ``count_limit``, the statement is ``COUNT(*)`` over the
    queryset's first ``count_limit`` rows (stopping there) instead of the rows themselves.
    """
    alias = "default"
    key = (alias, connections[alias].vendor, count_limit, shape, tuple(sorted(values)))
    with _lock:
        statement = _cache.get(key)
        if statement is not None:
            _cache.move_to_end(key)
            return statement
    statement = _compile(alias, values, build, count_limit)
    with _lock:
        _cache[key] = statement
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return statement


def _compile(
    alias: str,
    values: Mapping[str, Any],
    build: Callable[[Mapping[str, Any]], QuerySet[Any]],
    count_limit: int | None,
) -> Statement:
    connection = connections[alias]
    sentinels = {name: _sentinel(values[name], index) for index, name in enumerate(sorted(values))}
    queryset = build(sentinels).using(alias)
    if count_limit is not None:
        queryset = queryset.order_by().values("pk")[:count_limit]
    query = queryset.query
    compiler = query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    if count_limit is not None:
        sql = f"SELECT COUNT(*) FROM ({sql}) subquery"  # noqa: S608 - the ORM's own SQL
    adapt = connection.ops.adapt_datetimefield_value
    slots: dict[Any, _Slot] = {}
    for name, sentinel in sentinels.items():
        slots[adapt(sentinel) if isinstance(sentinel, dt.datetime) else sentinel] = _Slot(
            name, False
        )
        if isinstance(sentinel, int):
            slots[-sentinel] = _Slot(name, True)
    placed = tuple(_placed(param, slots) for param in params)
    if count_limit is not None:  # a count leaves out what is only selected (an annotation)
        return Statement(alias, sql, placed, ("count",), ())
    # Every value must have landed among the parameters: one that didn't was folded into the
    # SQL (or never used), and the statement would answer every request with the sentinel's.
    missing = set(values) - {param.name for param in placed if isinstance(param, _Slot)}
    if missing:
        raise ImproperlyConfigured(f"not a parameter of the compiled statement: {sorted(missing)}")
    names = (
        list(query.selected)
        if query.selected
        else [
            *query.extra_select,
            *query.values_select,
            *query.annotation_select,
        ]
    )
    expressions = [column for column, _, _ in compiler.select]
    converters = tuple(
        (index, tuple(functions), expression)
        for index, (functions, expression) in compiler.get_converters(expressions).items()
    )
    return Statement(alias, sql, placed, tuple(names), converters)


def _placed(param: Any, slots: dict[Any, _Slot]) -> Any:
    if not isinstance(param, int | str | dt.datetime) or isinstance(param, bool):
        return param
    return slots.get(param, param)


def _sentinel(value: Any, index: int) -> Any:
    if isinstance(value, bool) or value is None:
        raise ImproperlyConfigured("booleans and None belong in the shape, not among the values")
    if isinstance(value, int):
        return _INT_SENTINEL + index
    if isinstance(value, str):
        return f"\x1fslot {index}\x1f"
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return _DATETIME_SENTINEL + dt.timedelta(microseconds=index)
    raise ImproperlyConfigured(f"no sentinel for {type(value).__name__} values")
