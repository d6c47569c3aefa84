"""Heartbeats recorded in one flush per daphne process (jobs/heartbeat_batch.py): many hosts in
a fixed number of statements, leases renewed only for live sockets, cancels repeated, the reaper
and the disconnect unchanged. PostgreSQL: the write is its ``UPDATE … FROM unnest``."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agent.protocol import PROTOCOL_VERSION, encode
from hosts import services
from hosts.models import Host, HostStatus
from hosts.services import HeartbeatSeen, Presence, hosts_heartbeat_record, hosts_mark_stale_offline
from jobs import heartbeat_batch
from jobs.heartbeat_batch import heartbeats_accept
from jobs.models import Job, JobAttempt
from jobs.routing import websocket_urlpatterns
from tests.hosts.factories import credential_create, host_create, specs
from tests.jobs.helpers import say, submit

pytestmark = pytest.mark.postgres
application = URLRouter(websocket_urlpatterns)
TIMEOUT = 5


def _beat(host, *, at=None, **overrides):
    heartbeat: Any = {
        "load": 0.1,
        "is_available": True,
        "unavailable_reason": "",
        "running_jobs": [],
    }
    heartbeat.update(overrides)
    return HeartbeatSeen(host.pk, host.connection_id, heartbeat, at or timezone.now())


def _online(make_host, owner, count: int) -> list[Host]:
    return [
        make_host(owner, f"h{n}", connection_id=f"conn-{n}", last_seen_at=timezone.now())
        for n in range(count)
    ]


@pytest.mark.django_db
def test_two_hosts_heartbeats_are_recorded_in_one_flush(hana, make_host):
    # given: two connected hosts, seen 10 s ago
    before = timezone.now() - timedelta(seconds=10)
    one, two = _online(make_host, hana, 2)
    Host.objects.update(last_seen_at=before, online_seconds=5, tracked_seconds=7)
    now = timezone.now()

    # when: one flush with both heartbeats (the second host busy and unavailable)
    with CaptureQueriesContext(connection) as queries:
        answers = heartbeats_accept(
            [
                _beat(one, at=now),
                _beat(
                    two,
                    at=now,
                    is_available=False,
                    unavailable_reason="user_active",
                    running_jobs=[{"job_id": 999_999, "attempt": 1}],
                ),
            ]
        )

    # then: both rows moved, in one UPDATE of hosts; the stranger's job is cancelled
    gap = int(now.timestamp()) - int(before.timestamp())
    rows = {host.pk: host for host in Host.objects.filter(pk__in=[one.pk, two.pk])}
    assert [(h.last_seen_at, h.online_seconds, h.tracked_seconds) for h in rows.values()] == [
        (now, 5 + gap, 7 + gap)
    ] * 2
    assert (rows[one.pk].status, rows[one.pk].is_available) == (HostStatus.ONLINE, True)
    assert (rows[two.pk].status, rows[two.pk].unavailable_reason) == (
        HostStatus.BUSY,
        "user_active",
    )
    assert answers[(one.pk, one.connection_id)] == []
    assert answers[(two.pk, two.connection_id)] == [
        (
            "job.cancel",
            {
                "job_id": 999_999,
                "attempt": 1,
                "reason": "stale attempt: the server no longer runs it on this host",
            },
        )
    ]
    updates = [
        q["sql"].split()[1] for q in queries.captured_queries if q["sql"].startswith("UPDATE")
    ]
    assert updates == ["hosts_host"]


@pytest.mark.django_db
def test_a_flush_costs_the_same_statements_for_two_hosts_or_fifty(hana, make_host):
    # given
    hosts = _online(make_host, hana, 50)

    # when
    with CaptureQueriesContext(connection) as two:
        heartbeats_accept([_beat(host) for host in hosts[:2]])
    with CaptureQueriesContext(connection) as fifty:
        heartbeats_accept([_beat(host) for host in hosts])

    # then: hosts read and written, open attempts read (no lease to renew), savepoints
    assert len(two.captured_queries) == len(fifty.captured_queries) == 5
    assert Host.objects.filter(status=HostStatus.ONLINE).count() == 50


@pytest.mark.django_db
def test_the_batched_write_and_the_row_by_row_write_agree(hana, make_host, monkeypatch):
    # given: the same hosts twice, and a sequence of heartbeats that moves every field
    first = _online(make_host, hana, 3)
    second = [
        make_host(hana, f"twin{n}", connection_id=f"conn-{n}", last_seen_at=host.last_seen_at)
        for n, host in enumerate(first)
    ]
    Host.objects.filter(pk=first[1].pk).update(is_ready=False, not_ready_reason="engine down")
    Host.objects.filter(pk=second[1].pk).update(is_ready=False, not_ready_reason="engine down")
    Host.objects.filter(pk__in=[first[2].pk, second[2].pk]).update(status=HostStatus.OFFLINE)
    now = timezone.now() + timedelta(seconds=95)
    changes = [
        {"is_available": False, "unavailable_reason": "x" * 300, "slots": 3},
        {"readiness": {"ready": True, "reason": "", "isolation": "docker"}, "is_draining": True},
        {"running_jobs": [], "slots": 9},
    ]

    # when: the first through the batched UPDATE, the second row by row (as on SQLite)
    batched = hosts_heartbeat_record(
        [_beat(h, at=now, **c) for h, c in zip(first, changes, strict=True)]
    )
    monkeypatch.setattr(services, "_is_postgres", lambda: False)
    by_row = hosts_heartbeat_record(
        [_beat(h, at=now, **c) for h, c in zip(second, changes, strict=True)]
    )

    # then
    skip = {"id", "name", "connection_id", "owner", "created_at", "updated_at"}

    def state(host):
        return {
            k: v for k, v in model_to_dict(Host.objects.get(pk=host.pk)).items() if k not in skip
        }

    assert [state(h) for h in first] == [state(h) for h in second]
    assert (
        list(batched.values())
        == list(by_row.values())
        == [
            Presence.CURRENT,
            Presence.FREED,
            Presence.FREED,
        ]
    )
    assert Host.objects.get(pk=first[0].pk).unavailable_reason == "x" * 200


@pytest.mark.django_db
def test_a_replaced_connection_in_a_flush_changes_nothing_and_is_told(hana, make_host):
    # given
    host = make_host(hana, "box", connection_id="live")
    credential_create(host)
    before = model_to_dict(Host.objects.get(pk=host.pk))
    stale = HeartbeatSeen(
        host.pk,
        "replaced",
        {"load": 0.1, "is_available": False, "unavailable_reason": "r", "running_jobs": []},
        timezone.now(),
    )

    # when
    answers = heartbeats_accept([stale])

    # then
    assert answers == {(host.pk, "replaced"): Presence.REPLACED}
    assert model_to_dict(Host.objects.get(pk=host.pk)) == before


@pytest.mark.django_db
def test_offline_marking_is_unchanged_by_the_batch(hana, make_host, settings):
    # given: two hosts seen long ago; only one heartbeats (through a flush)
    old = timezone.now() - timedelta(seconds=settings.HOST_OFFLINE_AFTER_SECONDS + 5)
    beating, silent = _online(make_host, hana, 2)
    Host.objects.update(last_seen_at=old)
    heartbeats_accept([_beat(beating)])

    # when: the reaper runs
    marked = hosts_mark_stale_offline()

    # then
    assert marked == 1
    assert Host.objects.get(pk=beating.pk).status == HostStatus.ONLINE
    assert Host.objects.get(pk=silent.pk).status == HostStatus.OFFLINE


# --- through the socket (the batch of the test's event loop) -----------------------------------


async def _agent(credential: str, running_jobs=()) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"authorization", f"Bearer {credential}".encode())]
    )
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    hello = {
        "agent_version": "0.1.0",
        "protocol_version": PROTOCOL_VERSION,
        "specs": specs(cpus=8),
        "running_jobs": list(running_jobs),
        "is_available": True,
        "is_draining": False,
    }
    await socket.send_to(text_data=encode("hello", hello))
    assert (await socket.receive_json_from(TIMEOUT))["type"] == "welcome"
    for _ in range(2):  # drain, policy
        await socket.receive_json_from(TIMEOUT)
    return socket


async def _queued(socket: WebsocketCommunicator, running_jobs) -> None:
    """A heartbeat, in the batch once a later message of the socket is answered."""
    heartbeat = {
        "load": 0.1,
        "is_available": True,
        "unavailable_reason": "",
        "running_jobs": list(running_jobs),
    }
    await socket.send_to(text_data=encode("heartbeat", heartbeat))
    await socket.send_to(text_data=encode("job.accept", {"job_id": 999_999_999, "attempt": 1}))
    assert [(await socket.receive_json_from(TIMEOUT))["type"] for _ in range(2)] == ["error", "ack"]


@database_sync_to_async
def _running_job(alice, ledger, host):
    """A job running on ``host`` (its agent's accept and start, as the handlers take them)."""
    ledger.fund(alice, 5_000_000)
    Host.objects.filter(pk=host.pk).update(status=HostStatus.ONLINE, last_seen_at=timezone.now())
    job = submit(alice, host=host)
    say(host, "job.accept", job_id=job.pk, attempt=1)
    say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
    return job


@database_sync_to_async
def _lease(job):
    return JobAttempt.objects.get(job=job, number=1).lease_expires_at


@database_sync_to_async
def _lease_set(job, when):
    JobAttempt.objects.filter(job=job, number=1).update(lease_expires_at=when)


@pytest.fixture
def running(alice, hana, ledger):
    host = host_create(hana, name="box", cpus=8)
    return host, credential_create(host)


@pytest.mark.django_db(transaction=True)
async def test_a_flushed_heartbeat_renews_the_lease_of_what_runs(alice, ledger, running, settings):
    # given: a welcomed agent running a job whose lease is about to run out
    settings.HOST_HEARTBEAT_FLUSH_MS = 60_000  # only the test flushes
    host, credential = running
    job = await _running_job(alice, ledger, host)
    ref = {"job_id": job.pk, "attempt": 1}
    socket = await _agent(credential, [ref])
    await _lease_set(job, timezone.now() + timedelta(seconds=2))

    # when
    await _queued(socket, [ref])
    flushed_at = timezone.now()
    await heartbeat_batch.batch().flush()

    # then
    assert await _lease(job) >= flushed_at + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_lease_is_not_renewed_once_the_socket_is_gone(alice, ledger, running, settings):
    # given: the agent's heartbeat is in the batch, not yet flushed
    settings.HOST_HEARTBEAT_FLUSH_MS = 60_000
    host, credential = running
    job = await _running_job(alice, ledger, host)
    ref = {"job_id": job.pk, "attempt": 1}
    socket = await _agent(credential, [ref])
    soon = timezone.now() + timedelta(seconds=2)
    await _lease_set(job, soon)
    await _queued(socket, [ref])

    # when: the socket goes, then the flush runs
    await socket.disconnect()
    await heartbeat_batch.batch().flush()

    # then: the lease was not renewed (nor cut: it ends before the disconnect grace), the host
    # is offline
    assert await _lease(job) == soon
    status = await database_sync_to_async(lambda: Host.objects.get(pk=host.pk).status)()
    assert status == HostStatus.OFFLINE


@pytest.mark.django_db(transaction=True)
async def test_a_pending_cancel_is_delivered_within_a_heartbeat(alice, ledger, running, settings):
    # given: a cancel recorded while its doorbell was lost (nothing pushed to the agent)
    settings.HOST_HEARTBEAT_FLUSH_MS = 50
    host, credential = running
    job = await _running_job(alice, ledger, host)
    ref = {"job_id": job.pk, "attempt": 1}
    socket = await _agent(credential, [ref])
    await database_sync_to_async(
        lambda: Job.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())
    )()

    # when: the agent's next heartbeat
    heartbeat = {"load": 0.1, "is_available": True, "unavailable_reason": "", "running_jobs": [ref]}
    await socket.send_to(text_data=encode("heartbeat", heartbeat))

    # then: the next flush (50 ms here) answers it with the cancel
    cancel = await socket.receive_json_from(TIMEOUT)
    assert (cancel["type"], cancel["data"]) == (
        "job.cancel",
        {"job_id": job.pk, "attempt": 1, "reason": "cancelled by the owner"},
    )
    await socket.disconnect()


# --- presence from the open socket (a silent agent: no heartbeats at all) -----------------------


@database_sync_to_async
def _host(host):
    return Host.objects.get(pk=host.pk)


@pytest.mark.django_db(transaction=True)
async def test_a_silent_connected_agent_stays_seen_and_keeps_its_lease(
    alice, ledger, running, settings
):
    # given: a welcomed agent running a job, whose lease is about to run out and which never
    # sends a heartbeat (a newer agent whose state does not change); one heartbeat period is
    # 1 s and the process ticks every 100 ms
    settings.HOST_HEARTBEAT_SECONDS = 1
    settings.HOST_HEARTBEAT_FLUSH_MS = 100
    host, credential = running
    job = await _running_job(alice, ledger, host)
    ref = {"job_id": job.pk, "attempt": 1}
    socket = await _agent(credential, [ref])
    welcomed = await _host(host)
    await _lease_set(job, timezone.now() + timedelta(seconds=2))
    await database_sync_to_async(lambda: Job.objects.filter(pk=job.pk).update(status="running"))()

    # when: two and a half periods pass in silence
    await asyncio.sleep(2.5)

    # then: the process recorded the host's presence and renewed the lease of what its agent
    # last reported; nothing was said to the agent (no stale cancel, no error)
    seen = await _host(host)
    assert seen.last_seen_at > welcomed.last_seen_at + timedelta(seconds=1)
    assert (seen.status, seen.connection_id) == (HostStatus.BUSY, welcomed.connection_id)
    assert seen.online_seconds >= 1
    assert await _lease(job) > timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS - 2)
    assert await socket.receive_nothing(0.2)
    assert heartbeat_batch.batch().held() == 1
    await socket.disconnect()
    assert heartbeat_batch.batch().held() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_refresh_repeats_a_pending_cancel_but_names_no_stale_attempt(
    alice, ledger, running, settings
):
    # given: a silent agent whose last report named two attempts: one the owner cancels (the
    # doorbell lost), one that ended since (the agent's next report will drop it)
    settings.HOST_HEARTBEAT_FLUSH_MS = 60_000  # only the test ticks
    host, credential = running
    job = await _running_job(alice, ledger, host)
    ref = {"job_id": job.pk, "attempt": 1}
    ended = {"job_id": 999_999_999, "attempt": 1}
    socket = await _agent(credential, [ref])
    await _queued(socket, [ref, ended])
    await heartbeat_batch.batch().flush()
    assert (await socket.receive_json_from(TIMEOUT))["data"] == {
        **ended,
        "reason": "stale attempt: the server no longer runs it on this host",
    }  # the heartbeat itself is answered as ever
    await database_sync_to_async(
        lambda: Job.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())
    )()

    # when: a tick a period and a half later refreshes it
    later = time.monotonic() + 1.5 * settings.HOST_HEARTBEAT_SECONDS + 0.1
    assert heartbeat_batch.batch().refreshes_add(now=later) == 1
    await heartbeat_batch.batch().flush()

    # then: the cancel, and only it
    cancel = await socket.receive_json_from(TIMEOUT)
    assert (cancel["type"], cancel["data"]) == (
        "job.cancel",
        {**ref, "reason": "cancelled by the owner"},
    )
    assert await socket.receive_nothing(0.2)
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_an_agent_that_heartbeats_every_period_is_due_for_no_refresh(
    running, settings, monkeypatch
):
    # given: an older agent, heartbeating every period (the batch's clock the test's)
    settings.HOST_HEARTBEAT_FLUSH_MS = 60_000
    clock = [1000.0]
    monkeypatch.setattr(heartbeat_batch, "monotonic", lambda: clock[0])
    _, credential = running
    socket = await _agent(credential)

    # when / then: each tick just before its next heartbeat finds nothing due; a tick after a
    # missed one finds it
    for _ in range(3):
        clock[0] += settings.HOST_HEARTBEAT_SECONDS
        await _queued(socket, [])
        clock[0] += settings.HOST_HEARTBEAT_SECONDS - 0.1
        assert heartbeat_batch.batch().refreshes_add() == 0
        await heartbeat_batch.batch().flush()
        clock[0] -= settings.HOST_HEARTBEAT_SECONDS - 0.1
    clock[0] += 1.5 * settings.HOST_HEARTBEAT_SECONDS
    assert heartbeat_batch.batch().refreshes_add() == 1
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_refresh_of_a_replaced_socket_closes_it_and_changes_nothing(running, settings):
    # given: a silent agent whose host another connection took over (its close lost)
    settings.HOST_HEARTBEAT_FLUSH_MS = 60_000
    host, credential = running
    socket = await _agent(credential)
    await database_sync_to_async(
        lambda: Host.objects.filter(pk=host.pk).update(connection_id="the-newer-one")
    )()
    before = model_to_dict(await _host(host))

    # when
    later = time.monotonic() + 1.5 * settings.HOST_HEARTBEAT_SECONDS + 0.1
    heartbeat_batch.batch().refreshes_add(now=later)
    await heartbeat_batch.batch().flush()

    # then
    assert await socket.receive_output(TIMEOUT) == {"type": "websocket.close", "code": 4409}
    assert model_to_dict(await _host(host)) == before


@pytest.mark.django_db(transaction=True)
async def test_a_closed_socket_is_refreshed_no_more(alice, ledger, running, settings):
    # given: a silent agent running a job, and its socket gone
    settings.HOST_HEARTBEAT_FLUSH_MS = 60_000
    host, credential = running
    job = await _running_job(alice, ledger, host)
    ref = {"job_id": job.pk, "attempt": 1}
    socket = await _agent(credential, [ref])
    await socket.disconnect()
    cut = await _lease(job)
    gone = await _host(host)

    # when: a tick long after
    later = time.monotonic() + 10 * settings.HOST_HEARTBEAT_SECONDS
    assert heartbeat_batch.batch().refreshes_add(now=later) == 0
    await heartbeat_batch.batch().flush()

    # then: offline, its lease still the disconnect's (the grace), nothing renewed
    assert (await _host(host)).last_seen_at == gone.last_seen_at
    assert gone.status == HostStatus.OFFLINE
    assert await _lease(job) == cut
    assert cut <= timezone.now() + timedelta(seconds=settings.HOST_DISCONNECT_GRACE_SECONDS)
