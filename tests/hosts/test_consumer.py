import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import OperationalError
from django.forms.models import model_to_dict

from agent.protocol import (
    AGENT_MESSAGES,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REPLACED,
    CLOSE_UNAUTHORIZED,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    encode,
)
from config.errors import Conflict
from hosts import services
from hosts.messaging import host_send_async
from hosts.models import Host, HostStatus
from jobs import agent_socket, heartbeat_batch
from jobs.agent_messages import HANDLERS
from jobs.routing import websocket_urlpatterns
from tests.hosts.factories import credential_create, host_create, specs

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)
TIMEOUT = 3


def _hello(**overrides):
    hello = {
        "agent_version": "0.1.0",
        "protocol_version": PROTOCOL_VERSION,
        "specs": specs(cpus=8),
        "running_jobs": [],
        "is_available": True,
        "is_draining": False,
    }
    hello.update(overrides)
    return hello


def _heartbeat(**overrides):
    heartbeat = {"load": 0.1, "is_available": True, "unavailable_reason": "", "running_jobs": []}
    heartbeat.update(overrides)
    return heartbeat


@database_sync_to_async
def _row(host_id):
    return model_to_dict(Host.objects.get(pk=host_id))


@pytest.fixture
def host(hana):
    return host_create(hana, name="box")


@pytest.fixture
def credential(host):
    return credential_create(host)


async def _open(credential: str | None) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {credential}".encode())] if credential else []
    communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def _welcomed(credential: str) -> WebsocketCommunicator:
    communicator = await _open(credential)
    await communicator.send_to(text_data=encode("hello", _hello()))
    types = [(await communicator.receive_json_from(TIMEOUT))["type"] for _ in range(3)]
    assert types == ["welcome", "drain", "policy"]
    return communicator


async def _heartbeat_sent(communicator: WebsocketCommunicator, heartbeat: dict[str, Any]) -> None:
    """Send a heartbeat and wait until it is in this process's heartbeat batch: messages of one
    socket are handled in order, so once a later message is answered the heartbeat is queued."""
    await communicator.send_to(text_data=encode("heartbeat", heartbeat))
    await communicator.send_to(text_data=encode("job.accept", {"job_id": 1, "attempt": 1}))
    replies = [(await communicator.receive_json_from(TIMEOUT))["type"] for _ in range(2)]
    assert replies == ["error", "ack"]  # not this host's job


async def _heartbeat_flushed(
    communicator: WebsocketCommunicator, heartbeat: dict[str, Any]
) -> None:
    """Send a heartbeat and record it now (the batch's flush, jobs.heartbeat_batch), instead of
    at the next tick."""
    await _heartbeat_sent(communicator, heartbeat)
    await heartbeat_batch.batch().flush()


async def _closed_with(communicator: WebsocketCommunicator):
    output = await communicator.receive_output(TIMEOUT)
    assert output["type"] == "websocket.close"
    return output["code"]


@pytest.mark.parametrize("bearer", [None, "cph_not-a-credential"])
async def test_a_connection_without_a_valid_credential_is_closed_unauthorized(host, bearer):
    before = await _row(host.pk)

    communicator = await _open(bearer)

    assert await _closed_with(communicator) == CLOSE_UNAUTHORIZED
    assert await _row(host.pk) == before


async def test_a_revoked_credential_is_closed_unauthorized(host, credential, hana):
    await database_sync_to_async(services.credential_revoke)(owner=hana, host_id=host.pk)
    before = await _row(host.pk)

    communicator = await _open(credential)

    assert await _closed_with(communicator) == CLOSE_UNAUTHORIZED
    assert await _row(host.pk) == before


async def test_hello_gets_a_welcome_and_brings_the_host_online(host, credential, settings):
    # given
    settings.HOST_HEARTBEAT_SECONDS = 7
    settings.HOST_HEARTBEAT_IDLE_SECONDS = 120
    communicator = await _open(credential)

    # when
    await communicator.send_to(
        text_data=encode("hello", _hello(running_jobs=[{"job_id": 3, "attempt": 1}]))
    )

    # then
    welcome = await communicator.receive_json_from(TIMEOUT)
    assert welcome["type"] == "welcome"
    assert welcome["data"] == {
        "host_id": host.pk,
        "heartbeat_seconds": 7,
        "heartbeat_idle_seconds": 120,
        "usage_report_seconds": settings.HOST_USAGE_REPORT_SECONDS,
        "keep_jobs": [],
        # no jobs app registered: the server knows no job, so the agent kills what it runs
        "kill_jobs": [{"job_id": 3, "attempt": 1}],
    }
    drain = await communicator.receive_json_from(TIMEOUT)
    assert (drain["type"], drain["data"]) == ("drain", {"is_draining": False})
    policy = await communicator.receive_json_from(TIMEOUT)
    assert policy["type"] == "policy"
    row = await _row(host.pk)
    # busy: it reported a job; its next heartbeat, after killing it, says online
    assert (row["status"], row["cpus"], row["agent_version"]) == ("busy", 8, "0.1.0")
    await communicator.disconnect()
    assert (await _row(host.pk))["status"] == HostStatus.OFFLINE


async def test_the_resume_decision_says_which_jobs_to_keep(host, credential, monkeypatch):
    # given
    def resume(host_id, running):
        assert host_id == host.pk
        return running[:1], running[1:], [("drain", {"is_draining": True})]

    monkeypatch.setattr(agent_socket, "resume_decide", resume)
    communicator = await _open(credential)
    jobs = [{"job_id": 1, "attempt": 2}, {"job_id": 9, "attempt": 1}]

    # when
    await communicator.send_to(text_data=encode("hello", _hello(running_jobs=jobs)))

    # then
    welcome = await communicator.receive_json_from(TIMEOUT)
    assert (welcome["data"]["keep_jobs"], welcome["data"]["kill_jobs"]) == (jobs[:1], jobs[1:])
    messages = [await communicator.receive_json_from(TIMEOUT) for _ in range(3)]
    assert [m["type"] for m in messages] == ["drain", "policy", "drain"]
    await communicator.disconnect()


async def test_messages_before_hello_are_refused(host, credential):
    communicator = await _open(credential)
    before = await _row(host.pk)

    await communicator.send_to(text_data=encode("heartbeat", _heartbeat(), "m1"))

    error = await communicator.receive_json_from(TIMEOUT)
    assert error == {
        "type": "error",
        "id": error["id"],
        "data": {"code": "hello_required", "message": "send hello first", "ref_id": "m1"},
    }
    assert await _row(host.pk) == before
    await communicator.disconnect()


async def test_heartbeat_updates_presence_of_the_authenticated_host_only(hana, host, credential):
    # given
    other = await database_sync_to_async(host_create)(hana, name="other")
    other_before = await _row(other.pk)
    communicator = await _welcomed(credential)

    # when
    await communicator.send_to(
        text_data=encode(
            "heartbeat",
            _heartbeat(
                is_available=False,
                unavailable_reason="user_active",
                running_jobs=[{"job_id": 1, "attempt": 1}],
            ),
        )
    )
    # the job it claims is unknown here: cancelled, at the flush of this process's heartbeats
    cancel = await communicator.receive_json_from(TIMEOUT)
    assert (cancel["type"], cancel["data"]["job_id"]) == ("job.cancel", 1)

    # then
    row = await _row(host.pk)
    assert (row["is_available"], row["unavailable_reason"]) == (False, "user_active")
    assert row["status"] == HostStatus.BUSY
    assert await _row(other.pk) == other_before
    await communicator.disconnect()


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"type": "heartbeat", "data": {}}),
        "x" * (MAX_MESSAGE_BYTES + 1),
        json.dumps(
            {"type": "heartbeat", "id": "m", "data": {"pad": "é" * (MAX_MESSAGE_BYTES // 2)}}
        ),
    ],
    ids=["bad_json", "not_an_object", "no_id", "oversized", "oversized_in_bytes"],
)
async def test_malformed_or_oversized_messages_close_the_socket_and_change_nothing(
    host, credential, raw
):
    # given
    communicator = await _welcomed(credential)
    before = await _row(host.pk)

    # when
    await communicator.send_to(text_data=raw)

    # then
    assert await _closed_with(communicator) == CLOSE_PROTOCOL_ERROR
    assert await _row(host.pk) == before


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "heartbeat", "id": "m7", "data": {**_heartbeat(), "load": "high"}}, "bad_field"),
        ({"type": "heartbeat", "id": "m7", "data": {"load": 0.5}}, "missing_field"),
        ({"type": "job.offer", "id": "m7", "data": {}}, "unknown_type"),
    ],
)
async def test_invalid_fields_get_an_error_naming_the_message_and_change_nothing(
    host, credential, message, code
):
    # given
    communicator = await _welcomed(credential)
    before = await _row(host.pk)

    # when
    await communicator.send_to(text_data=json.dumps(message))

    # then
    error = await communicator.receive_json_from(TIMEOUT)
    assert error["type"] == "error"
    assert (error["data"]["code"], error["data"]["ref_id"]) == (code, "m7")
    assert await _row(host.pk) == before
    await communicator.disconnect()


async def test_hello_with_another_protocol_version_is_refused(host, credential):
    communicator = await _open(credential)
    before = await _row(host.pk)

    await communicator.send_to(text_data=encode("hello", _hello(protocol_version=99), "h"))

    error = await communicator.receive_json_from(TIMEOUT)
    assert (error["data"]["code"], error["data"]["ref_id"]) == ("unsupported_protocol_version", "h")
    assert await _closed_with(communicator) == CLOSE_PROTOCOL_ERROR
    assert await _row(host.pk) == before


async def test_hello_with_impossible_specs_is_refused(host, credential):
    communicator = await _open(credential)
    before = await _row(host.pk)

    await communicator.send_to(text_data=encode("hello", _hello(specs=specs(cpus=10**6)), "h"))

    error = await communicator.receive_json_from(TIMEOUT)
    assert error["data"]["code"] == "invalid_specs"
    assert await _closed_with(communicator) == CLOSE_PROTOCOL_ERROR
    assert await _row(host.pk) == before


async def test_a_newer_connection_replaces_the_older_one(host, credential):
    # given
    first = await _welcomed(credential)

    # when
    second = await _welcomed(credential)

    # then
    assert await _closed_with(first) == CLOSE_REPLACED
    await first.disconnect()
    row = await _row(host.pk)
    assert row["status"] == HostStatus.ONLINE  # the old socket's disconnect changed nothing
    await _heartbeat_flushed(second, _heartbeat(is_available=False, unavailable_reason="r"))
    assert (await _row(host.pk))["unavailable_reason"] == "r"
    await second.disconnect()


async def test_a_handshake_that_never_says_hello_replaces_nothing(host, credential):
    # given: the live socket
    live = await _welcomed(credential)

    # when: a late handshake with the credential connects and says nothing (a stalled server
    # serving its backlog), then goes
    late = await _open(credential)
    await late.disconnect()

    # then: the live socket is open, still the host's, and its heartbeats count
    assert await live.receive_nothing(0.3)
    row = await _row(host.pk)
    assert row["status"] == HostStatus.ONLINE
    await _heartbeat_flushed(live, _heartbeat(is_available=False, unavailable_reason="r"))
    assert (await _row(host.pk))["unavailable_reason"] == "r"
    await live.disconnect()


async def test_a_hello_from_an_older_connection_after_a_newer_ones_is_refused(host, credential):
    # given: two sockets connect; the newer one says hello first
    older = await _open(credential)
    newer = await _welcomed(credential)

    # when: the older one's hello arrives late
    await older.send_to(text_data=encode("hello", _hello()))

    # then: it is told it was replaced; the newer one stays
    assert await _closed_with(older) == CLOSE_REPLACED
    assert await newer.receive_nothing(0.3)
    await _heartbeat_flushed(newer, _heartbeat(is_available=False, unavailable_reason="n"))
    assert (await _row(host.pk))["unavailable_reason"] == "n"
    await newer.disconnect()


async def test_a_database_error_in_a_heartbeat_keeps_the_socket(host, credential, monkeypatch):
    communicator = await _welcomed(credential)

    def broken(*args, **kwargs):
        raise OperationalError("the server closed the connection unexpectedly")

    with monkeypatch.context() as patched:
        patched.setattr(heartbeat_batch, "heartbeats_accept", broken)
        message = encode("heartbeat", _heartbeat(), "beat-1")
        await communicator.send_to(text_data=message)
        reply = await communicator.receive_json_from(TIMEOUT)
    assert (reply["type"], reply["data"]["code"], reply["data"]["ref_id"]) == (
        "error",
        "internal_error",
        "beat-1",
    )

    # the next heartbeat is served on the same socket
    await _heartbeat_flushed(communicator, _heartbeat(is_available=False, unavailable_reason="x"))
    assert (await _row(host.pk))["unavailable_reason"] == "x"
    await communicator.disconnect()


async def test_with_the_channel_layer_down_a_disconnect_still_takes_the_host_offline(
    host, credential, monkeypatch
):
    communicator = await _welcomed(credential)
    assert (await _row(host.pk))["status"] == HostStatus.ONLINE

    async def unreachable(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(get_channel_layer(), "group_discard", unreachable)
    await communicator.disconnect()

    assert (await _row(host.pk))["status"] == HostStatus.OFFLINE


async def test_a_job_message_about_a_job_never_offered_here_is_refused(host, credential):
    communicator = await _welcomed(credential)

    await communicator.send_to(text_data=encode("job.accept", {"job_id": 1, "attempt": 1}, "a1"))

    error = await communicator.receive_json_from(TIMEOUT)
    assert error["data"] == {
        "code": "not_your_job",
        "message": "job 1 attempt 1 was not offered to this host",
        "ref_id": "a1",
    }
    await communicator.disconnect()


def test_every_agent_message_has_its_handler():
    answered_by_the_socket = {"hello", "heartbeat", "ack"}
    assert set(HANDLERS) == set(AGENT_MESSAGES) - answered_by_the_socket


async def test_job_messages_go_to_their_handler_with_the_authenticated_host(
    host, credential, monkeypatch
):
    # given
    seen = []

    def accept(host_id, envelope):
        seen.append((host_id, envelope["data"]))
        return [("job.cancel", {"job_id": 1, "attempt": 1, "reason": "test"})]

    monkeypatch.setitem(HANDLERS, "job.accept", accept)
    communicator = await _welcomed(credential)

    # when
    await communicator.send_to(text_data=encode("job.accept", {"job_id": 1, "attempt": 1}, "a1"))

    # then
    reply = await communicator.receive_json_from(TIMEOUT)
    assert (reply["type"], reply["data"]["reason"]) == ("job.cancel", "test")
    ack = await communicator.receive_json_from(TIMEOUT)
    assert (ack["type"], ack["data"]) == ("ack", {"ack_id": "a1"})
    assert seen == [(host.pk, {"job_id": 1, "attempt": 1})]
    await communicator.disconnect()


async def test_a_handler_refusal_becomes_an_error_and_no_ack(host, credential, monkeypatch):
    def refuse(host_id, envelope):
        raise Conflict("attempt 1 of job 1 is not yours", code="stale_attempt")

    monkeypatch.setitem(HANDLERS, "job.started", refuse)
    communicator = await _welcomed(credential)

    await communicator.send_to(
        text_data=encode("job.started", {"job_id": 1, "attempt": 1, "phase": "running"}, "s1")
    )

    error = await communicator.receive_json_from(TIMEOUT)
    assert error["data"] == {
        "code": "stale_attempt",
        "message": "attempt 1 of job 1 is not yours",
        "ref_id": "s1",
    }
    assert await communicator.receive_nothing(0.2)
    await communicator.disconnect()


async def test_a_heartbeat_costs_no_database_round_trip_of_its_own(
    host, credential, monkeypatch, settings
):
    # given: a welcomed agent, and every flush of the heartbeat batch recorded (no tick in the
    # test's time: only the test flushes)
    settings.HOST_HEARTBEAT_FLUSH_MS = 60_000
    flushed = []
    accept = heartbeat_batch.heartbeats_accept

    def recorded(beats, refreshes=()):
        flushed.append(sorted(beat.host_id for beat in beats))
        return accept(beats, refreshes)

    monkeypatch.setattr(heartbeat_batch, "heartbeats_accept", recorded)
    communicator = await _welcomed(credential)

    # when: three heartbeats, each queued before the next, then one flush
    for reason in ("a", "b", "c"):
        heartbeat = _heartbeat(is_available=False, unavailable_reason=reason)
        await _heartbeat_sent(communicator, heartbeat)
    assert flushed == []
    await heartbeat_batch.batch().flush()

    # then: one flush recorded the last of them
    assert flushed == [[host.pk]]
    assert (await _row(host.pk))["unavailable_reason"] == "c"
    await communicator.disconnect()


async def test_the_server_pushes_messages_to_the_hosts_agent(host, credential):
    communicator = await _welcomed(credential)

    message_id = await host_send_async(host.pk, "drain", {"is_draining": True})

    pushed = await communicator.receive_json_from(TIMEOUT)
    assert pushed == {"type": "drain", "id": message_id, "data": {"is_draining": True}}
    await communicator.disconnect()


async def test_revoking_the_credential_closes_the_live_socket(host, credential, hana):
    communicator = await _welcomed(credential)

    await database_sync_to_async(services.credential_revoke)(owner=hana, host_id=host.pk)

    assert await _closed_with(communicator) == CLOSE_UNAUTHORIZED
    assert (await _row(host.pk))["status"] == HostStatus.OFFLINE
