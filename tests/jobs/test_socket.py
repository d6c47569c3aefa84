"""The owner's job socket /ws/jobs/{id}/, through the real routing (session + Origin check)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client

from jobs.billing import usage_charges_post
from jobs.models import Job
from jobs.routing import websocket_urlpatterns
from tests.conftest import sync_thread_connections_close
from tests.jobs.helpers import say, submit, usage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job_and_host(alice, make_host, hana, ledger):
    ledger.fund(alice, 5_000_000)
    host = make_host(hana)
    return submit(alice), host


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def communicator(job_id: int, cookie: str | None, origin: str = "http://testserver"):
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/jobs/{job_id}/", headers)


async def test_the_owner_sees_the_status_then_live_changes_and_logs(job_and_host, alice):
    # given
    job, host = job_and_host
    socket = communicator(job.pk, await sync_to_async(session_cookie)(alice))

    # when
    connected, _ = await socket.connect()
    first = await socket.receive_json_from(timeout=5)
    await sync_to_async(say)(host, "job.accept", job_id=job.pk, attempt=1)
    accepted = await socket.receive_json_from(timeout=5)
    await sync_to_async(say)(host, "job.log", job_id=job.pk, attempt=1, offset=0, data="hello\n")
    logged = await socket.receive_json_from(timeout=5)

    # then
    assert connected
    assert (first["type"], first["status"], first["attempt"]) == ("job.status", "offered", 1)
    assert (accepted["type"], accepted["status"]) == ("job.status", "accepted")
    assert logged == {
        "type": "job.log",
        "job_id": job.pk,
        "attempt": 1,
        "offset": 0,
        "next_offset": 6,
        "data": "hello\n",
    }
    await socket.disconnect()


async def test_the_owner_sees_the_cost_so_far_once_charged(job_and_host, alice):
    # given: the job runs and its agent reported usage
    job, host = job_and_host
    await sync_to_async(say)(host, "job.accept", job_id=job.pk, attempt=1)
    await sync_to_async(say)(host, "job.started", job_id=job.pk, attempt=1, phase="running")
    await sync_to_async(say)(host, "job.usage", **usage(job, 1, seq=1, wall_seconds=2.0))
    socket = communicator(job.pk, await sync_to_async(session_cookie)(alice))
    await socket.connect()
    await socket.receive_json_from(timeout=5)

    # when: the batch poster charges it
    posted = await sync_to_async(usage_charges_post)()
    pushed = await socket.receive_json_from(timeout=5)

    # then: the cost so far, beside the counters it is the cost of
    cost = await sync_to_async(lambda: Job.objects.get(pk=job.pk).cost_micros)()
    assert (posted.posted, cost > 0) == (1, True)
    assert pushed == {
        "type": "job.usage",
        "job_id": job.pk,
        "attempt": 1,
        "seq": 1,
        "cpu_seconds": 1.0,
        "wall_seconds": 2.0,
        "memory_peak_mb": 10,
        "memory_current_mb": 8,
        "gpu_seconds": 0.0,
        "cost_micros": cost,
    }
    await socket.disconnect()


async def test_mallory_cannot_join_alices_job(job_and_host, mallory):
    job, _ = job_and_host
    socket = communicator(job.pk, await sync_to_async(session_cookie)(mallory))
    connected, code = await socket.connect()
    assert (connected, code) == (False, 4404)


async def test_anonymous_sockets_are_refused(job_and_host):
    job, _ = job_and_host
    connected, code = await communicator(job.pk, None).connect()
    assert (connected, code) == (False, 4401)


async def test_a_foreign_origin_is_refused(job_and_host, alice):
    job, _ = job_and_host
    cookie = await sync_to_async(session_cookie)(alice)
    connected, _ = await communicator(job.pk, cookie, origin="https://evil.example").connect()
    assert connected is False


@pytest.mark.postgres  # SQLite's in-memory test database is one shared, never-closed connection
async def test_no_database_connection_outlives_a_socket_test(job_and_host, mallory):
    # given: the consumer queried the database in asgiref's shared sync thread, where the test
    # communicator leaves the connection open
    job, _ = job_and_host
    socket = communicator(job.pk, await sync_to_async(session_cookie)(mallory))
    await socket.connect()
    assert await sync_to_async(lambda: connection.connection is not None)()

    # when: what the autouse fixture of tests/conftest.py does after every async test
    sync_thread_connections_close()

    # then
    assert await sync_to_async(lambda: connection.connection is None)()
