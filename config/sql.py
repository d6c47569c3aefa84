"""Raw statements on hot paths that Django's ORM can't say well (``= ANY(array)``, ``UPDATE …
FROM unnest(…)``), on PostgreSQL."""

from __future__ import annotations

from typing import Any

from django.db import connection


def is_postgres() -> bool:
    return bool(connection.vendor == "postgresql")


def server_bound_cursor() -> Any:
    """A cursor of the default connection (in its transaction) that binds parameters on the
    server, wrapped as Django's own so that query logging and counting still see it.

    Django's psycopg cursors bind on the client: every element of an array parameter is quoted
    in Python and the statement is re-parsed for placeholders, which for a thousand-host
    heartbeat flush was most of its CPU. Bound on the server, psycopg dumps arrays in C.
    """
    # Defined only under psycopg 3 (the one this project installs); django-stubs omit it.
    from django.db.backends.postgresql.base import (  # type: ignore[attr-defined]
        ServerBindingCursor,
    )

    connection.ensure_connection()
    raw = ServerBindingCursor(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(raw)
    return connection.make_cursor(raw)
