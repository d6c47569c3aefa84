"""A real daphne and the real ``communipute-agent`` in subprocesses, on loopback.

Enroll, online in the catalog, daphne killed and restarted (the agent reconnects by itself),
the owner drains the host (the agent hears it), the agent is stopped (the host goes offline).
Needs PostgreSQL (daphne shares the test database) and Redis (the cross-process channel layer).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from agent.control import state_read
from hosts.models import Host, HostStatus

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_SECONDS = 1
OFFLINE_AFTER_SECONDS = 3


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database_url() -> str:
    db = django_settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


class Daphne:
    def __init__(self, port: int, log: Path, args: tuple[str, ...] = ()) -> None:
        self.port = port
        self.log = log
        self.args = args  # more of daphne's options (e.g. its websocket pings)
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "DATABASE_URL": database_url(),
            "HOST_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "HOST_OFFLINE_AFTER_SECONDS": str(OFFLINE_AFTER_SECONDS),
            "PYTHONPATH": str(ROOT),
        }

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    *self.args,
                    "config.asgi:application",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._listening, "daphne to listen")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"daphne exited: {self.log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True


@pytest.fixture
def daphne(tmp_path: Path) -> Iterator[Daphne]:
    server = Daphne(free_port(), tmp_path / "daphne.log")
    server.start()
    yield server
    server.kill()  # before pytest-django flushes the database it shares


@pytest.fixture
def agent_env(tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMMUNIPUTE_")},
        "PYTHONPATH": str(ROOT),
        "COMMUNIPUTE_AGENT_CONFIG": str(tmp_path / "agent" / "agent.json"),
        "COMMUNIPUTE_WORK_DIR": str(tmp_path / "work"),
        "COMMUNIPUTE_BACKOFF_INITIAL_SECONDS": "0.2",
        "COMMUNIPUTE_BACKOFF_MAX_SECONDS": "1",
        # No jobs run here: the process runtime is ready on any machine (a Docker runtime
        # without its image would report not ready, and the host take no work).
        "COMMUNIPUTE_JOB_MANAGER": "process",
        "COMMUNIPUTE_ALLOW_UNISOLATED": "1",
    }


def agent_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_enroll_run_restart_drain_stop(
    daphne, agent_env, tmp_path, hana, alice, client_for, settings
):
    settings.HOST_HEARTBEAT_SECONDS = HEARTBEAT_SECONDS
    settings.HOST_OFFLINE_AFTER_SECONDS = OFFLINE_AFTER_SECONDS
    server = f"http://127.0.0.1:{daphne.port}"
    state_path = tmp_path / "agent" / "agent.state.json"

    # given: the owner asks for an enrollment and runs the command on the machine
    token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json").json()["token"]
    enrolled = agent_cli(agent_env, "enroll", "--server", server, "--token", token)
    assert enrolled.returncode == 0, enrolled.stderr
    host = Host.objects.get()
    assert host.owner == hana
    assert json.loads((tmp_path / "agent" / "agent.json").read_text())["host_id"] == host.pk

    # when: the agent runs
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run"],
        env=agent_env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # then: it is online in the catalog
        wait_for(lambda: Host.objects.get().status == HostStatus.ONLINE, "the host online")
        listing = client_for(alice).get("/api/v1/hosts/?online=true").json()["results"]
        assert [(h["id"], h["status"], h["is_accepting_jobs"]) for h in listing] == [
            (host.pk, "online", True)
        ]
        first_connection = Host.objects.get().connection_id

        # when: the server dies and comes back
        daphne.kill()
        wait_for(lambda: not (state_read(state_path) or {}).get("connected"), "the agent to notice")
        daphne.start()

        # then: the agent reconnects by itself
        reconnected = wait_for(
            lambda: (
                Host.objects.filter(status=HostStatus.ONLINE)
                .exclude(connection_id=first_connection)
                .first()
            ),
            "the agent to reconnect",
        )
        assert reconnected.pk == host.pk
        assert agent.poll() is None

        # when: the owner drains the host
        drained = client_for(hana).patch(
            f"/api/v1/my/hosts/{host.pk}/", {"is_draining": True}, format="json"
        )
        assert drained.json()["status"] == "draining"

        # then: the agent hears it
        wait_for(lambda: (state_read(state_path) or {}).get("is_server_draining"), "the drain")
        status = agent_cli(agent_env, "status", "--json")
        assert json.loads(status.stdout)["state"]["is_server_draining"] is True

        # when: the agent is stopped (SIGTERM drains, and nothing runs: it exits)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0

        # then: the host is offline at once, not only after the reaper's cutoff
        wait_for(
            lambda: Host.objects.get().status == HostStatus.OFFLINE, "the host offline", timeout=2
        )
        listing = client_for(alice).get(f"/api/v1/hosts/{host.pk}/").json()
        assert (listing["status"], listing["is_accepting_jobs"]) == ("offline", False)
        assert listing["reliability_bps"] > 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        log.close()
        print((tmp_path / "agent.log").read_text())


def test_a_silent_agent_stays_online_and_a_stopped_one_is_dropped_by_the_ping(
    tmp_path, agent_env, hana, client_for, settings
):
    """A half-open connection: the agent process SIGSTOPped keeps its TCP connection (the
    kernel answers, no FIN), sends nothing and answers no ping."""
    # given: daphne pinging an idle socket after 1 s and dropping it 1 s after an unanswered
    # ping; the reaper's cutoff far away (30 s), so only the ping can take the host offline
    settings.HOST_HEARTBEAT_SECONDS = HEARTBEAT_SECONDS
    settings.HOST_OFFLINE_AFTER_SECONDS = 30
    daphne = Daphne(
        free_port(), tmp_path / "daphne.log", ("--ping-interval", "1", "--ping-timeout", "1")
    )
    daphne.env["HOST_OFFLINE_AFTER_SECONDS"] = "30"
    daphne.start()
    token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json").json()["token"]
    server = f"http://127.0.0.1:{daphne.port}"
    assert agent_cli(agent_env, "enroll", "--server", server, "--token", token).returncode == 0
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run"],
        env=agent_env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: Host.objects.get().status == HostStatus.ONLINE, "the host online")
        first = Host.objects.get()

        # when: 3 s pass (the agent's state does not change: it sends no heartbeat)
        time.sleep(3)

        # then: the server still saw it, from the open socket
        seen = Host.objects.get()
        assert seen.status == HostStatus.ONLINE
        assert seen.connection_id == first.connection_id
        assert seen.last_seen_at is not None
        assert first.last_seen_at is not None
        assert seen.last_seen_at > first.last_seen_at

        # when: the agent process is stopped (its socket half-open)
        agent.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()

        # then: daphne's ping drops it well before the reaper's 30 s, and the host is offline
        wait_for(
            lambda: Host.objects.get().status == HostStatus.OFFLINE, "the host offline", timeout=10
        )
        assert time.monotonic() - stopped_at < 10
        assert Host.objects.get().connection_id == ""
    finally:
        agent.send_signal(signal.SIGCONT)
        agent.kill()
        agent.wait(10)
        log.close()
        daphne.kill()
