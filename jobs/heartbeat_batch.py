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

**Presence comes from the connection, not from the heartbeats.** Each loop also holds every
welcomed socket it serves (``presence_hold`` after the welcome; ``heartbeat_discard`` at the
disconnect lets it go) with the agent's last report (its hello, then each heartbeat), and each
tick it records again, in the same flush, every held connection that nothing recorded for
``REFRESH_AFTER`` times HOST_HEARTBEAT_SECONDS: its ``last_seen_at`` and uptime, and the leases of
the attempts its agent last reported, as if that report had come again (a *refresh*). So an
agent whose state has not changed need not talk at all: it heartbeats when its state changes
and every ``heartbeat_idle_seconds`` (welcome), and its liveness is the socket, which daphne
pings (``--ping-interval``, ``--ping-timeout``: a half-open connection is dropped after them,
and the disconnect marks the host offline and cuts its leases). An older agent that heartbeats
every ``heartbeat_seconds`` is served as before: each of its heartbeats is recorded, and it is
never due for a refresh. A refresh repeats pending cancels and closes a replaced socket like a
heartbeat, but names no stale attempt: what the agent reported may have ended since, and its
own next report says so.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from time import monotonic

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
# A held connection is refreshed once nothing recorded it for this many heartbeat periods:
# more than one, so that an older agent's own heartbeats (every period, give or take its
# jitter) leave it due for none; few enough that a refresh, a tick late, still comes well
# within JOB_LEASE_SECONDS and HOST_OFFLINE_AFTER_SECONDS (the settings keep both several
# periods long: 60 s and 45 s against 10 s).
REFRESH_AFTER = 1.5
# What one heartbeat is answered: its replies, or the presence its connection lost.
Answer = Presence | list[Reply]
# None: the flush failed, the heartbeat is answered ``internal_error``.
Answered = Callable[[str, Answer | None], Awaitable[None]]


def heartbeats_accept(
    beats: list[HeartbeatSeen], refreshes: Collection[Connection] = ()
) -> dict[Connection, Answer]:
    """One transaction for a flush: the presence of every host, then the leases of what the
    current ones run and their cancels, then the queued jobs each host that can take more
    than before is offered now (in host order: capacity_offer locks the host). ``refreshes``:
    the connections whose beat is the agent's last report again (no stale cancels)."""
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
        {host_id: latest[(host_id, c)].heartbeat["running_jobs"] for host_id, c in current},
        refreshed={host_id for host_id, c in current if (host_id, c) in refreshes},
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


@dataclass(frozen=True, slots=True)
class _Pending:
    beat: HeartbeatSeen
    message_id: str
    answered: Answered
    is_refresh: bool = False


@dataclass(slots=True)  # one per socket: no __dict__ each
class _Held:
    """A welcomed socket of this loop: the agent's last report, where its answers go, and when
    its presence was last recorded (``monotonic``)."""

    report: Heartbeat
    answered: Answered
    recorded_at: float


class HeartbeatBatch:
    """The heartbeats one event loop received since its last flush, the welcomed sockets it
    holds, and the task that flushes them every tick; the task ends when a flush leaves
    nothing pending and no socket is held, and starts again with the next, so an idle loop (or
    a test's) holds no task."""

    def __init__(self) -> None:
        self._pending: dict[Connection, _Pending] = {}
        # Oldest recorded first: a tick walks only the front, the connections that are due.
        self._held: OrderedDict[Connection, _Held] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        # One flush at a time: two flushes side by side could commit one connection's older
        # heartbeat after its newer one.
        self._flushing = asyncio.Lock()

    def add(self, beat: HeartbeatSeen, message_id: str, answered: Answered) -> None:
        key = (beat.host_id, beat.connection_id)
        self._pending[key] = _Pending(beat, message_id, answered)
        held = self._held.get(key)
        if held is not None:
            held.report, held.recorded_at = beat.heartbeat, monotonic()
            self._held.move_to_end(key)
        self._start()

    def hold(self, host_id: int, connection_id: str, report: Heartbeat, answered: Answered) -> None:
        self._held[(host_id, connection_id)] = _Held(report, answered, monotonic())
        self._start()

    def discard(self, host_id: int, connection_id: str) -> None:
        self._pending.pop((host_id, connection_id), None)
        self._held.pop((host_id, connection_id), None)

    def held(self) -> int:
        return len(self._held)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending or self._held:
            await asyncio.sleep(settings.HOST_HEARTBEAT_FLUSH_MS / 1000)
            self.refreshes_add()
            await self.flush()

    def refreshes_add(self, *, now: float | None = None) -> int:
        """Put every held connection that nothing recorded for ``REFRESH_AFTER`` heartbeat
        periods in the next flush, its agent's last report again; how many."""
        now = monotonic() if now is None else now
        due_before = now - REFRESH_AFTER * settings.HOST_HEARTBEAT_SECONDS
        due: list[Connection] = []
        for key, held in self._held.items():
            if held.recorded_at > due_before:
                break
            due.append(key)
        seen_at = timezone.now()
        for key in due:
            held = self._held[key]
            held.recorded_at = now
            self._held.move_to_end(key)
            if key not in self._pending:
                beat = HeartbeatSeen(key[0], key[1], held.report, seen_at)
                self._pending[key] = _Pending(beat, "", held.answered, is_refresh=True)
        return len(due)

    async def flush(self) -> None:
        """Record what is pending now, then answer each heartbeat's socket."""
        async with self._flushing:
            batch, self._pending = self._pending, {}
            if not batch:
                return
            answers: dict[Connection, Answer] = {}
            refreshes = {key for key, pending in batch.items() if pending.is_refresh}
            try:
                answers = await database_sync_to_async(durable_call, thread_sensitive=False)(
                    heartbeats_accept, [pending.beat for pending in batch.values()], refreshes
                )
            except Exception:
                logger.exception("recording %s heartbeats failed", len(batch))
        for key, pending in batch.items():
            answer = answers.get(key)
            if pending.is_refresh and answer is None:
                continue  # nobody asked: the next tick records it again
            if pending.is_refresh and answer == []:
                continue  # the common case: nothing to say, not even a coroutine to run
            try:
                await pending.answered(pending.message_id, answer)
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


def presence_hold(host_id: int, connection_id: str, report: Heartbeat, answered: Answered) -> None:
    """A welcomed socket: this loop records its presence every HOST_HEARTBEAT_SECONDS from now
    on, with ``report`` (the state its hello reported) until its next heartbeat."""
    batch().hold(host_id, connection_id, report, answered)


def heartbeat_discard(host_id: int, connection_id: str) -> None:
    """The connection closed: its unflushed heartbeat renews nothing, and its presence is no
    longer recorded."""
    batch().discard(host_id, connection_id)
