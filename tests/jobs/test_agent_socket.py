"""Jobs through the real agent socket /ws/agent/: offers arrive, replies come back, fencing."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from agent.protocol import PROTOCOL_VERSION, encode
from jobs.models import Job
from jobs.routing import websocket_urlpatterns
from tests.hosts.factories import credential_create, host_create, specs
from tests.jobs.helpers import submit

pytestmark = pytest.mark.django_db(transaction=True)
application = URLRouter(websocket_urlpatterns)
TIMEOUT = 5


async def connected_agent(credential, running_jobs=(), specs_overrides=None):
    socket = WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"authorization", f"Bearer {credential}".encode())]
    )
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    hello = {
        "agent_version": "0.1.0",
        "protocol_version": PROTOCOL_VERSION,
        "specs": specs(cpus=8, **(specs_overrides or {})),
        "running_jobs": list(running_jobs),
        "is_available": True,
        "is_draining": False,
    }
    await socket.send_to(text_data=encode("hello", hello))
    welcome = await socket.receive_json_from(TIMEOUT)
    assert welcome["type"] == "welcome"
    return socket, welcome


async def receive_type(socket, wanted):
    while True:
        message = await socket.receive_json_from(TIMEOUT)
        if message["type"] == wanted:
            return message


@pytest.fixture
def hosts(hana):
    a = host_create(hana, name="a", cpus=8)
    b = host_create(hana, name="b", cpus=8, cpu_core_hour_micros=900_000)
    return (a, credential_create(a)), (b, credential_create(b))


async def test_an_offer_reaches_the_agent_and_its_answers_move_the_job(alice, hosts, ledger):
    # given: host A's agent is connected (and so online)
    (_, secret_a), _ = hosts
    socket, _ = await connected_agent(secret_a)
    await database_sync_to_async(ledger.fund)(alice, 5_000_000)

    # when: alice submits
    job = await database_sync_to_async(submit)(alice)
    offer = await receive_type(socket, "job.offer")
    await socket.send_to(text_data=encode("job.accept", {"job_id": job.pk, "attempt": 1}))
    await socket.send_to(
        text_data=encode(
            "job.log", {"job_id": job.pk, "attempt": 1, "offset": 0, "data": "hello\n"}
        )
    )
    ack = await receive_type(socket, "log.ack")

    # then
    assert (offer["data"]["job_id"], offer["data"]["attempt"]) == (job.pk, 1)
    assert ack["data"] == {"job_id": job.pk, "attempt": 1, "offset": 6}
    status = await database_sync_to_async(lambda: Job.objects.get(pk=job.pk).status)()
    assert status == "accepted"
    await socket.disconnect()


async def test_host_b_cannot_accept_host_as_offer(alice, hosts, ledger):
    # given
    (_, secret_a), (_, secret_b) = hosts
    socket_a, _ = await connected_agent(secret_a)
    socket_b, _ = await connected_agent(secret_b)
    await database_sync_to_async(ledger.fund)(alice, 5_000_000)
    job = await database_sync_to_async(submit)(alice)
    await receive_type(socket_a, "job.offer")

    # when
    await socket_b.send_to(text_data=encode("job.accept", {"job_id": job.pk, "attempt": 1}))
    error = await receive_type(socket_b, "error")

    # then
    assert error["data"]["code"] == "not_your_job"
    status = await database_sync_to_async(lambda: Job.objects.get(pk=job.pk).status)()
    assert status == "offered"
    await socket_a.disconnect()
    await socket_b.disconnect()


async def test_a_reconnecting_agent_keeps_its_job(alice, hosts, ledger):
    # given: host A runs the job, then its connection drops
    (_, secret_a), _ = hosts
    socket, _ = await connected_agent(secret_a)
    await database_sync_to_async(ledger.fund)(alice, 5_000_000)
    job = await database_sync_to_async(submit)(alice)
    await receive_type(socket, "job.offer")
    await socket.send_to(text_data=encode("job.accept", {"job_id": job.pk, "attempt": 1}))
    await socket.send_to(
        text_data=encode("job.started", {"job_id": job.pk, "attempt": 1, "phase": "running"})
    )
    await socket.send_to(
        text_data=encode("job.log", {"job_id": job.pk, "attempt": 1, "offset": 0, "data": "x"})
    )
    await receive_type(socket, "log.ack")
    await socket.disconnect()

    # when: it says hello again with the job and a stranger's
    ref = {"job_id": job.pk, "attempt": 1}
    stranger = {"job_id": job.pk + 1000, "attempt": 1}
    again, welcome = await connected_agent(secret_a, running_jobs=[ref, stranger])

    # then
    assert (welcome["data"]["keep_jobs"], welcome["data"]["kill_jobs"]) == ([ref], [stranger])
    status = await database_sync_to_async(lambda: Job.objects.get(pk=job.pk).status)()
    assert status == "running"
    await again.disconnect()
