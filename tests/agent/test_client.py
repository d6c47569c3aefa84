"""The agent's client against a fake server speaking the protocol (no Django involved)."""

import asyncio
import contextlib
import json
from typing import Any

import pytest
from websockets.asyncio.server import serve

from agent import client as client_module
from agent.client import (
    EXIT_REPLACED,
    EXIT_UNAUTHORIZED,
    REPLACED_LIMIT,
    AgentClient,
    backoff_delay,
)
from agent.config import config_load
from agent.control import drain_request, state_read
from agent.idle import AVAILABLE, Availability
from agent.job_manager_protocol import NO_RUNTIME_READINESS, RejectingJobManager
from agent.protocol import (
    AGENT_MESSAGES,
    CLOSE_REPLACED,
    CLOSE_UNAUTHORIZED,
    Readiness,
    decode,
    encode,
)
from tests.hosts.factories import specs

TIMEOUT = 5


class FakeServer:
    """Welcomes every hello and records what agents send, per connection."""

    def __init__(self):
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.connections = []
        self.headers = []
        self.on_hello = None
        self.heartbeat_seconds = 1
        self.heartbeat_idle_seconds: int | None = None  # None: an older server's welcome
        self.server: Any = None

    async def handler(self, ws):
        self.connections.append(ws)
        self.headers.append(ws.request.headers)
        async for raw in ws:
            envelope = decode(raw, AGENT_MESSAGES)
            await self.messages.put(envelope)
            if envelope["type"] == "hello":
                if self.on_hello:
                    await self.on_hello(ws)
                    continue
                welcome = {
                    "host_id": 1,
                    "heartbeat_seconds": self.heartbeat_seconds,
                    "usage_report_seconds": 5,
                    "keep_jobs": [],
                    "kill_jobs": [],
                }
                if self.heartbeat_idle_seconds is not None:
                    welcome["heartbeat_idle_seconds"] = self.heartbeat_idle_seconds
                await ws.send(encode("welcome", welcome))

    async def next(self, message_type):
        while True:
            envelope = await asyncio.wait_for(self.messages.get(), TIMEOUT)
            if envelope["type"] == message_type:
                return envelope

    @property
    def port(self):
        return self.server.sockets[0].getsockname()[1]


class FakeMonitor:
    def __init__(self):
        self.verdict = AVAILABLE
        self.total_load_percent = 12.5

    def check(self, policy, *, jobs_running):
        return self.verdict


@pytest.fixture
async def server():
    fake = FakeServer()
    async with serve(fake.handler, "127.0.0.1", 0) as running:
        fake.server = running
        yield fake


@pytest.fixture
def make_client(tmp_path):
    def make(port):
        config = config_load(
            tmp_path / "agent.json",
            env={},
            overrides={
                "server": f"http://127.0.0.1:{port}",
                "host_id": 1,
                "credential": "cph_test-credential",
                "install_id": "install-test-0001",
                "backoff_initial_seconds": 0.05,
                "backoff_max_seconds": 0.2,
            },
        )
        return AgentClient(
            config,
            monitor=FakeMonitor(),
            specs_provider=lambda: specs(),  # type: ignore[arg-type,return-value]
            handle_signals=False,
        )

    return make


@contextlib.asynccontextmanager
async def running(client):
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        client.stop()
        await asyncio.wait_for(task, TIMEOUT)


def test_backoff_grows_exponentially_with_jitter_up_to_the_ceiling():
    assert [backoff_delay(n, 1, 60, rng=lambda: 0.0) for n in range(8)] == [
        0.5,
        1,
        2,
        4,
        8,
        16,
        30,
        30,
    ]
    assert backoff_delay(3, 1, 60, rng=lambda: 1.0) == 8
    assert backoff_delay(100, 1, 60, rng=lambda: 1.0) == 60


async def test_hello_carries_the_credential_and_heartbeats_follow(server, make_client):
    client = make_client(server.port)

    async with running(client):
        hello = await server.next("hello")
        heartbeat = await server.next("heartbeat")
        await server.next("heartbeat")  # every heartbeat_seconds (1 s here)

    assert server.headers[0]["Authorization"] == "Bearer cph_test-credential"
    assert server.headers[0]["User-Agent"].startswith("communipute-agent/")
    assert hello["data"]["specs"] == specs()
    assert hello["data"]["running_jobs"] == []
    not_ready = {"ready": False, "reason": NO_RUNTIME_READINESS, "isolation": "none"}
    assert (hello["data"]["install_id"], hello["data"]["slots"]) == ("install-test-0001", 1)
    assert hello["data"]["readiness"] == not_ready
    assert heartbeat["data"] == {
        "load": 0.125,
        "is_available": True,
        "unavailable_reason": "",
        "running_jobs": [],
        "is_draining": False,
        "slots": 1,
        "readiness": not_ready,
    }


async def test_the_link_tells_job_managers_the_usage_period_and_the_connection(server, make_client):
    # given
    client = make_client(server.port)
    assert client.is_connected is False

    async with running(client):
        # when: welcomed (usage_report_seconds 5 in the fake server's welcome)
        await server.next("heartbeat")

        # then
        assert client.is_connected is True
        assert client.usage_report_seconds == 5.0

    assert client.is_connected is False


async def test_offers_are_rejected_without_a_runtime_and_resent_until_acknowledged(
    server, make_client
):
    # given
    client = make_client(server.port)
    offer = {"job_id": 5, "attempt": 2}

    async with running(client):
        await server.next("heartbeat")
        # when: an offer; the agent rejects it, but the server drops the connection before acking
        await server.connections[0].send(encode("job.offer", {**_offer(), **offer}))
        reject = await server.next("job.reject")
        await server.connections[0].close()

        # then: after reconnecting the reject is sent again, with the same id
        await server.next("hello")
        again = await server.next("job.reject")
        await server.connections[1].send(encode("ack", {"ack_id": again["id"]}))
        await server.next("heartbeat")
        await server.next("heartbeat")

    assert reject["data"] == {
        "job_id": 5,
        "attempt": 2,
        "reason": "no runtime configured",
        "code": "host_fault",
    }
    assert again["id"] == reject["id"]
    assert len(client.outbox) == 0


async def test_an_unavailable_host_rejects_offers_and_tells_the_server(server, make_client):
    client = make_client(server.port)
    client.monitor.verdict = Availability(False, "user_active")

    async with running(client):
        heartbeat = await server.next("heartbeat")
        while heartbeat["data"]["is_available"]:
            heartbeat = await server.next("heartbeat")
        await server.connections[0].send(encode("job.offer", _offer()))
        reject = await server.next("job.reject")

    assert heartbeat["data"]["unavailable_reason"] == "user_active"
    assert reject["data"]["reason"] == "unavailable: user_active"
    assert reject["data"]["code"] == "busy"  # not now; never held against the job


async def test_the_server_drains_the_host(server, make_client):
    client = make_client(server.port)

    async with running(client):
        await server.next("heartbeat")
        await server.connections[0].send(encode("drain", {"is_draining": True}))
        await server.connections[0].send(encode("job.offer", _offer()))
        reject = await server.next("job.reject")
        state = state_read(client.config.state_path) or {}

    assert reject["data"]["reason"] == "draining"
    assert reject["data"]["code"] == "busy"
    assert client.is_server_draining is True
    assert state["is_server_draining"] is True


async def test_a_drain_request_reaches_the_server_and_exit_drain_ends_the_agent(
    server, make_client
):
    # given
    client = make_client(server.port)
    task = asyncio.create_task(client.run())
    await server.next("heartbeat")

    # when: `communipute-agent drain`
    drain_request(client.config.control_path, "drain")
    heartbeat = await server.next("heartbeat")
    while not heartbeat["data"]["is_draining"]:
        heartbeat = await server.next("heartbeat")

    # and then `communipute-agent drain --exit`
    drain_request(client.config.control_path, "exit")
    exit_code = await asyncio.wait_for(task, TIMEOUT)

    # then
    assert exit_code == 0
    assert server.connections[0].close_code == 1001
    assert (state_read(client.config.state_path) or {})["running"] is False
    assert not client.config.control_path.exists()


async def test_the_agent_reconnects_after_the_server_goes_away(make_client):
    # given: a server that accepts, then vanishes, then comes back on the same port
    first = FakeServer()
    async with serve(first.handler, "127.0.0.1", 0) as running_server:
        first.server = running_server
        port = first.port
        client = make_client(port)
        task = asyncio.create_task(client.run())
        await first.next("heartbeat")
    await asyncio.sleep(0.3)  # a few failed reconnects while nothing listens

    # when
    second = FakeServer()
    async with serve(second.handler, "127.0.0.1", port) as running_server:
        second.server = running_server
        hello = await second.next("hello")
        await second.next("heartbeat")
        client.stop()
        assert await asyncio.wait_for(task, TIMEOUT) == 0

    # then
    assert hello["data"]["specs"] == specs()


async def test_a_refused_credential_ends_the_agent_at_once(server, make_client):
    async def refuse(ws):
        await ws.close(CLOSE_UNAUTHORIZED)

    server.on_hello = refuse
    client = make_client(server.port)

    result = await asyncio.wait_for(client.run(), TIMEOUT)

    assert result == EXIT_UNAUTHORIZED
    assert len(server.connections) == 1


def _welcome():
    return encode(
        "welcome",
        {
            "host_id": 1,
            "heartbeat_seconds": 1,
            "usage_report_seconds": 5,
            "keep_jobs": [],
            "kill_jobs": [],
        },
    )


async def test_one_replacement_is_checked_by_reconnecting_and_the_agent_stays(server, make_client):
    # given: a stalled server that, once resumed, closes the live socket with 4409 because a
    # stale handshake of the same agent was processed after it (seen after a 90 s SIGSTOP)
    async def replace_the_first(ws):
        await ws.send(_welcome())
        if len(server.connections) == 1:
            await asyncio.sleep(0.2)
            await ws.close(CLOSE_REPLACED)

    server.on_hello = replace_the_first
    client = make_client(server.port)

    async with running(client) as task:
        await server.next("hello")
        # when: replaced once
        await server.next("hello")  # it came back by itself
        await server.next("heartbeat")
        await server.next("heartbeat")

        # then: it stays, connected on the second socket
        assert not task.done()
        assert client.is_connected
        assert len(server.connections) == 2
    assert client.exit_code == 0


async def test_an_agent_replaced_again_and_again_gives_up_with_status_4(server, make_client):
    # given: two agents share the credential: every connection is taken over after a while
    async def replace_after_a_while(ws):
        await ws.send(_welcome())
        await asyncio.sleep(0.1)
        await ws.close(CLOSE_REPLACED)

    server.on_hello = replace_after_a_while
    client = make_client(server.port)

    # when
    result = await asyncio.wait_for(client.run(), TIMEOUT)

    # then: it checked by reconnecting, and gave up at the limit
    assert result == EXIT_REPLACED
    assert len(server.connections) == REPLACED_LIMIT


async def test_replacements_far_apart_are_forgotten(server, make_client, monkeypatch):
    # given: connections that stay long enough before each takeover
    monkeypatch.setattr(client_module, "REPLACED_FORGET_SECONDS", 0.2)

    async def replace_late(ws):
        await ws.send(_welcome())
        await asyncio.sleep(0.4)
        await ws.close(CLOSE_REPLACED)

    server.on_hello = replace_late
    client = make_client(server.port)

    async with running(client) as task:
        # when: replaced more often than the limit, each time after staying connected
        while len(server.connections) <= REPLACED_LIMIT + 1:
            await server.next("hello")

        # then
        assert not task.done()
        assert client.replacements == 1


async def test_a_change_of_readiness_is_reported_at_once(server, make_client):
    # given: heartbeats far apart, and a job manager that becomes ready
    server.heartbeat_seconds = 60
    client = make_client(server.port)
    jobs = client.jobs
    assert isinstance(jobs, RejectingJobManager)

    async with running(client):
        first = await server.next("heartbeat")
        ready = Readiness(ready=True, reason="", isolation="docker")
        jobs.readiness = lambda: ready  # type: ignore[method-assign]

        # when / then: the next heartbeat comes within the tick, not after 60 s
        second = await server.next("heartbeat")

    assert first["data"]["readiness"]["ready"] is False
    assert second["data"]["readiness"] == ready


async def _heartbeats_within(server: FakeServer, seconds: float) -> list[Any]:
    heartbeats = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        with contextlib.suppress(TimeoutError):
            envelope = await asyncio.wait_for(server.messages.get(), left)
            if envelope["type"] == "heartbeat":
                heartbeats.append(envelope)
    return heartbeats


async def test_an_idle_agent_heartbeats_only_when_its_state_changes(server, make_client):
    # given: a server that takes the open socket as presence (heartbeat_idle_seconds)
    server.heartbeat_idle_seconds = 60
    client = make_client(server.port)
    monitor = client.monitor
    assert isinstance(monitor, FakeMonitor)

    async with running(client):
        await server.next("heartbeat")  # the first, after the welcome

        # when: nothing changes but the load for 2.5 s (heartbeat_seconds is 1 s)
        monitor.total_load_percent = 80.0
        quiet = await _heartbeats_within(server, 2.5)

        # when: the job manager's slots change (its state)
        client.jobs.slots = lambda: 4
        changed = await _heartbeats_within(server, 1.5)

    # then: silence, then one heartbeat with the new state, within the second's check
    assert quiet == []
    assert [(h["data"]["slots"], h["data"]["load"]) for h in changed] == [(4, 0.8)]
    assert client.heartbeat_idle_seconds == 60


async def test_an_idle_agent_still_heartbeats_every_idle_period(server, make_client):
    # given
    server.heartbeat_idle_seconds = 1
    client = make_client(server.port)

    # when / then: nothing changes, and heartbeats come every idle period
    async with running(client):
        await server.next("heartbeat")
        assert len(await _heartbeats_within(server, 2.6)) == 2


async def test_an_older_servers_welcome_keeps_the_agent_at_heartbeat_seconds(server, make_client):
    # given: a welcome without heartbeat_idle_seconds (an older server), 1 s heartbeats
    client = make_client(server.port)

    # when / then: a heartbeat every second although nothing changes
    async with running(client):
        await server.next("heartbeat")
        assert len(await _heartbeats_within(server, 2.6)) == 2
    assert client.heartbeat_idle_seconds == 1


async def test_malformed_server_messages_are_ignored(server, make_client):
    client = make_client(server.port)

    async with running(client):
        await server.next("heartbeat")
        await server.connections[0].send("{nonsense")
        await server.connections[0].send(json.dumps({"type": "drain", "id": "x", "data": {}}))
        await server.next("heartbeat")

    assert client.is_server_draining is False


def _offer():
    return {
        "job_id": 1,
        "attempt": 1,
        "offer_expires_at": "2026-01-01T00:00:00Z",
        "entrypoint": "main.py",
        "files": [],
        "requirements": [],
        "limits": {
            "cpus": 1.0,
            "memory_mb": 512,
            "gpus": 0,
            "timeout_seconds": 60,
            "allow_network": False,
        },
        "rates": {"cpu_core_hour_micros": 1, "memory_gb_hour_micros": 1, "gpu_hour_micros": 0},
        "max_cost_micros": 1000,
        "charged_micros": 0,
    }


class _DiskReportingJobManager(RejectingJobManager):
    def host_disk(self) -> tuple[bool, int] | None:
        return True, 4321


async def test_hello_says_what_the_job_manager_knows_of_the_disk(server, make_client):
    # given
    client = make_client(server.port)
    client.jobs = _DiskReportingJobManager()

    # when
    async with running(client):
        hello = await server.next("hello")

    # then
    assert hello["data"]["specs"] == {**specs(), "disk_quota": True, "job_disk_mb": 4321}
