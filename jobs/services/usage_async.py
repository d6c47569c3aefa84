"""The one-statement usage path, run on the agent socket's own event loop (docs/metering.md).

Every other agent message goes through ``database_sync_to_async``: a hop to a worker thread
and back, Django's connection bookkeeping before and after, and the two threads taking turns
at the GIL. For ``job.usage`` — most of what agents send — that hop cost more than the work.
So the socket first tries the same single statement as ``usage_ingest_fast``, awaited on an
asynchronous psycopg connection from a pool that belongs to the event loop
(``psycopg_pool.AsyncConnectionPool``: up to a few connections per loop, autocommit,
statements prepared by the server after a few uses). Whatever that
statement does not take — a repeat, a refusal, a stale attempt, the cap reached, any
database error — goes on to the ordinary handler, which decides
(``jobs.agent_messages.handle_job_usage``).

The connections use the settings of Django's ``default`` database; the pool opens on first use
and replaces a connection that broke.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import weakref
from typing import Any, Literal

import psycopg
from django.db import connections
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from agent.protocol import Usage
from jobs.services.usage import UsageVerdict, fast_params, fast_sql, fast_verdict

logger = logging.getLogger(__name__)

# Django's own connection parameters that are not psycopg's, or that we set ourselves.
_DJANGO_ONLY = frozenset({"cursor_factory", "context", "prepare_threshold", "server_side_binding"})

# Per event loop, a few connections: a statement waits for the one before it on the same
# connection, so one connection would cap the rate at one round trip at a time.
CONNECTIONS_PER_LOOP = 3


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool[Any]] = (
    weakref.WeakKeyDictionary()
)


async def _pool() -> AsyncConnectionPool[Any]:
    """This event loop's pool (opened on first use): a connection it finds broken on return is
    discarded and replaced by the pool itself."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = AsyncConnectionPool(
            kwargs={**_params(), "autocommit": True},
            min_size=1,
            max_size=CONNECTIONS_PER_LOOP,
            open=False,
            name="usage-fast-path",
        )
        await pool.open()
        first = _pools.setdefault(loop, pool)
        if first is not pool:  # another report of this loop opened one meanwhile
            await pool.close()
            pool = first
    return pool


def _params() -> dict[str, Any]:
    database = connections["default"]
    return {
        key: value
        for key, value in database.get_connection_params().items()
        if key not in _DJANGO_ONLY
    }


def _is_postgres() -> bool:
    return bool(connections["default"].vendor == "postgresql")


class FastPath(enum.Enum):
    NOT_RUN = "not_run"  # the statement did not run (or failed): the handler runs it


async def usage_ingest_fast_async(
    host_id: int, report: Usage
) -> UsageVerdict | Literal[FastPath.NOT_RUN] | None:
    """``usage_ingest_fast`` without leaving the event loop. None: the statement ran and did
    not take the report, so the handler decides without running it again; ``NOT_RUN``: the
    handler runs the whole path."""
    if not _is_postgres():
        return FastPath.NOT_RUN
    params = fast_params(host_id, report)
    if params is None:
        return None
    try:
        async with (await _pool()).connection() as link, link.cursor() as cursor:
            await cursor.execute(fast_sql(params), params)
            row = await cursor.fetchone()
    except (psycopg.Error, PoolTimeout):
        logger.warning(
            "usage report %s of job %s: the fast path failed",
            report["seq"],
            report["job_id"],
            exc_info=True,
        )
        return FastPath.NOT_RUN
    return None if row is None else fast_verdict(row, params)


async def connections_close() -> None:
    """Close this event loop's connections (tests, shutdown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
