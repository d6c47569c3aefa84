"""Heartbeats are presence, not transactions: each daphne process records the heartbeats it
received in one flush every HOST_HEARTBEAT_FLUSH_MS, for all its hosts at once.

A heartbeat used to be a durable transaction of its own (the host row locked and saved, the
leases renewed, the pending cancels looked up: a few milliseconds of server CPU each), so one
process served about 200 heartbeats a second (docs/benchmarks.md, "Idle agents"). Now the
socket only puts the heartbeat in its event loop's batch (the last one per connection counts:
each carries the agent's whole state) and the batch's task, once per tick, runs
``heartbeats_accept`` in one durable transaction: every host's presence in one read and one
write (``hosts.services.hosts_heartbeat_record``), every lease and pending cancel in one read
and one write (``jobs.services.leases.heartbeat_leases``), and ``capacity_offer`` only for the
hosts that can take more work than before. Each socket is then answered as before: the
``job.cancel`` replies, a close if its connection is no longer the host's live one, or
``error internal_error`` if the flush failed.

What moves: a heartbeat's effects land up to one tick later. Leases are renewed from the
flush's time, so they still run JOB_LEASE_SECONDS past a heartbeat at least; a socket that
closes takes its unflushed heartbeat with it (``heartbeat_discard``), so nothing is renewed
for a connection that is gone.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from agent.protocol import Envelope, Heartbeat
from config.transactions import durable_call
from hosts import services
from hosts.services import HeartbeatSeen, Presence
from jobs.agent_messages import Reply, heartbeat_replies
from jobs.services.dispatch import capacity_offer
from jobs.services.leases import heartbeat_leases

logger = logging.getLogger(__name__)

Connection = tuple[int, str]  # (host id, connection id)
# What one heartbeat is answered: its replies, or the presence its connection lost.
Answer = Presence | list[Reply]
# None: the flush failed, the heartbeat is answered ``internal_error``.
Answered = Callable[[str, Answer | None], Awaitable[None]]


def heartbeats_accept(beats: list[HeartbeatSeen]) -> dict[Connection, Answer]:
    """One transaction for a flush: the presence of every host, then the leases of what the
    current ones run and their cancels, then the queued jobs each host that can take more
    than before is offered now (in host order: capacity_offer locks the host)."""
    presences = services.hosts_heartbeat_record(beats)
    current = {
        key: presence
        for key, presence in presences.items()
        if presence in (Presence.CURRENT, Presence.FREED)
    }
    latest = {
        (beat.host_id, beat.connection_id): beat
        for beat in sorted(beats, key=lambda beat: beat.seen_at)
    }
    cancels = heartbeat_leases(
        {host_id: latest[(host_id, c)].heartbeat["running_jobs"] for host_id, c in current}
    )
    answers: dict[Connection, Answer] = {
        key: presence for key, presence in presences.items() if key not in current
    }
    for key in sorted(current):
        if current[key] is Presence.FREED:
            capacity_offer(key[0])
        answers[key] = heartbeat_replies(cancels[key[0]])
    return answers


def heartbeat_accept(host_id: int, connection_id: str, envelope: Envelope[Heartbeat]) -> Answer:
    """One heartbeat recorded at once, in the caller's transaction (tests, benchmarks)."""
    beat = HeartbeatSeen(host_id, connection_id, envelope["data"], timezone.now())
    return heartbeats_accept([beat])[(host_id, connection_id)]


@dataclass(frozen=True)
class _Pending:
    beat: HeartbeatSeen
    message_id: str
    answered: Answered


class HeartbeatBatch:
    """The heartbeats one event loop received since its last flush, and the task that
    flushes them; the task ends when a flush leaves nothing pending and starts again with the
    next heartbeat, so an idle loop (or a test's) holds no task."""

    def __init__(self) -> None:
        self._pending: dict[Connection, _Pending] = {}
        self._task: asyncio.Task[None] | None = None
        # One flush at a time: two flushes side by side could commit one connection's older
        # heartbeat after its newer one.
        self._flushing = asyncio.Lock()

    def add(self, beat: HeartbeatSeen, message_id: str, answered: Answered) -> None:
        self._pending[(beat.host_id, beat.connection_id)] = _Pending(beat, message_id, answered)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, host_id: int, connection_id: str) -> None:
        self._pending.pop((host_id, connection_id), None)

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(settings.HOST_HEARTBEAT_FLUSH_MS / 1000)
            await self.flush()

    async def flush(self) -> None:
        """Record what is pending now, then answer each heartbeat's socket."""
        async with self._flushing:
            batch, self._pending = self._pending, {}
            if not batch:
                return
            answers: dict[Connection, Answer] = {}
            try:
                answers = await database_sync_to_async(durable_call, thread_sensitive=False)(
                    heartbeats_accept, [pending.beat for pending in batch.values()]
                )
            except Exception:
                logger.exception("recording %s heartbeats failed", len(batch))
        for key, pending in batch.items():
            try:
                await pending.answered(pending.message_id, answers.get(key))
            except Exception:
                logger.exception("answering the heartbeat of host %s failed", key[0])


_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HeartbeatBatch] = (
    weakref.WeakKeyDictionary()
)


def batch() -> HeartbeatBatch:
    """The running event loop's batch."""
    return _batches.setdefault(asyncio.get_running_loop(), HeartbeatBatch())


def heartbeat_add(
    host_id: int, connection_id: str, envelope: Envelope[Heartbeat], answered: Answered
) -> None:
    """Queue a heartbeat for this loop's next flush; ``answered`` gets its answer then."""
    beat = HeartbeatSeen(host_id, connection_id, envelope["data"], timezone.now())
    batch().add(beat, envelope["id"], answered)


def heartbeat_discard(host_id: int, connection_id: str) -> None:
    """The connection closed: its unflushed heartbeat renews nothing."""
    batch().discard(host_id, connection_id)
