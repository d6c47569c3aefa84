"""The one-statement usage path, run on the agent socket's own event loop (docs/metering.md).

Every other agent message goes through ``database_sync_to_async``: a hop to a worker thread
and back, Django's connection bookkeeping before and after, and the two threads taking turns
at the GIL. For ``job.usage`` — most of what agents send — that hop cost more than the work.
So the socket first tries the same single statement as ``usage_ingest_fast``, awaited on an
asynchronous psycopg connection that belongs to the event loop (a few per loop, used in
turn, autocommit, statements prepared by the server after a few uses). Whatever that
statement does not take — a repeat, a refusal, a stale attempt, the cap reached, any
database error — goes on to the ordinary handler, which decides
(``jobs.agent_messages.handle_job_usage``).

The connections use the settings of Django's ``default`` database and open on first use; a
broken one is dropped and opened again on its next turn.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import weakref
from typing import Any, Literal

import psycopg
from django.db import connections

from agent.protocol import Usage
from jobs.services.usage import UsageVerdict, fast_params, fast_sql, fast_verdict

logger = logging.getLogger(__name__)

# Django's own connection parameters that are not psycopg's, or that we set ourselves.
_DJANGO_ONLY = frozenset({"cursor_factory", "context", "prepare_threshold", "server_side_binding"})

# Per event loop, a few connections used in turn: a statement waits for the one before it on
# the same connection, so one connection would cap the rate at one round trip at a time.
CONNECTIONS_PER_LOOP = 3


class _Links:
    def __init__(self) -> None:
        self.links: list[psycopg.AsyncConnection[Any] | None] = [None] * CONNECTIONS_PER_LOOP
        self.turn = 0
        self.opening = asyncio.Lock()

    async def next(self) -> tuple[int, psycopg.AsyncConnection[Any]]:
        index = self.turn = (self.turn + 1) % len(self.links)
        link = self.links[index]
        if link is None or link.closed:
            async with self.opening:
                link = self.links[index]
                if link is None or link.closed:
                    link = await psycopg.AsyncConnection.connect(**_params(), autocommit=True)
                    self.links[index] = link
        return index, link

    async def drop(self, index: int, link: psycopg.AsyncConnection[Any]) -> None:
        if self.links[index] is link:
            self.links[index] = None
        try:
            await link.close()
        except psycopg.Error:
            logger.debug("closing a broken usage connection failed", exc_info=True)


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Links] = weakref.WeakKeyDictionary()


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
    links = _loops.setdefault(asyncio.get_running_loop(), _Links())
    index, link = await links.next()
    try:
        async with link.cursor() as cursor:
            await cursor.execute(fast_sql(params), params)
            row = await cursor.fetchone()
    except psycopg.Error:
        logger.warning(
            "usage report %s of job %s: the fast path failed",
            report["seq"],
            report["job_id"],
            exc_info=True,
        )
        await links.drop(index, link)
        return FastPath.NOT_RUN
    return None if row is None else fast_verdict(row, params)


async def connections_close() -> None:
    """Close this event loop's connections (tests, shutdown)."""
    links = _loops.pop(asyncio.get_running_loop(), None)
    for link in links.links if links is not None else []:
        if link is not None:
            await link.close()
