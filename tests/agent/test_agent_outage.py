"""A stalled server does not take the fleet offline (issue 12): a real daphne and real
``communipute-agent run`` processes.

While daphne is stopped (SIGSTOP) the kernel still accepts TCP connections into its backlog,
so every reconnect of an agent leaves a handshake there; once resumed, daphne serves them all,
and a stale one served after the live one replaces it with 4409. An agent that believed the
first 4409 exited with status 4 and never came back; now it checks by reconnecting. The first
test makes that stale handshake on purpose (it fails with the agent before issue 12); the
second stops daphne for 90 s, as the issue's fault-injection run did.

Needs PostgreSQL (daphne shares the test database) and Redis (the channel layer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from agent.control import state_read
from hosts.models import Host, HostStatus
from tests.hosts.test_agent_end_to_end import ROOT, Daphne, agent_cli, free_port, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(400),
]

OUTAGE_SECONDS = 90
BACK_WITHIN_SECONDS = 60


def agent_env(root: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMMUNIPUTE_")},
        "PYTHONPATH": str(ROOT),
        "COMMUNIPUTE_AGENT_CONFIG": str(root / "agent.json"),
        "COMMUNIPUTE_WORK_DIR": str(root / "work"),
        "COMMUNIPUTE_JOB_MANAGER": "none",
        # Short backoffs, as the tests and the demo run agents: many handshakes queue up while
        # daphne is stopped (with the defaults, 1 s to 60 s, fewer).
        "COMMUNIPUTE_BACKOFF_INITIAL_SECONDS": "0.2",
        "COMMUNIPUTE_BACKOFF_MAX_SECONDS": "1",
    }


def _agent_start(root: Path, server: str, token: str) -> subprocess.Popen[bytes]:
    env = agent_env(root)
    enrolled = agent_cli(env, "enroll", "--server", server, "--token", token)
    assert enrolled.returncode == 0, enrolled.stderr
    with (root / "agent.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _agent_end(process: subprocess.Popen[bytes], root: Path) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    print(root.name, (root / "agent.log").read_text()[-4000:])


def _connected(root: Path) -> bool:
    return bool((state_read(root / "agent.state.json") or {}).get("connected"))


def test_a_stale_handshake_served_late_does_not_end_the_agent(tmp_path, hana, client_for):
    daphne = Daphne(free_port(), tmp_path / "daphne.log")
    daphne.start()
    server = f"http://127.0.0.1:{daphne.port}"
    root = tmp_path / "agent"
    token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json").json()["token"]
    agent = _agent_start(root, server, token)
    try:
        wait_for(lambda: Host.objects.filter(status=HostStatus.ONLINE).exists(), "online", 60)
        host = Host.objects.get()
        live = host.connection_id
        credential = json.loads((root / "agent.json").read_text())["credential"]

        # when: a handshake with the agent's credential arrives after the live socket's (what
        # a resumed server serves from its backlog), and its client is long gone: it never
        # says hello
        with connect(
            f"ws://127.0.0.1:{daphne.port}/ws/agent/",
            additional_headers={"Authorization": f"Bearer {credential}"},
        ):
            wait_for(
                lambda: Host.objects.get().connection_seq > host.connection_seq,
                "the late handshake",
            )
            time.sleep(2)

            # then: the live socket stays the live one, and the agent was never disturbed
            assert Host.objects.get().connection_id == live
        time.sleep(2)
        assert agent.poll() is None
        assert _connected(root)
        current = Host.objects.get()
        assert (current.connection_id, current.status) == (live, HostStatus.ONLINE)
        assert "another connection of this host took over" not in (root / "agent.log").read_text()
    finally:
        _agent_end(agent, root)
        daphne.kill()


def test_agents_come_back_by_themselves_after_a_90_second_sigstop(tmp_path, hana, client_for):
    daphne = Daphne(free_port(), tmp_path / "daphne.log")
    daphne.start()
    server = f"http://127.0.0.1:{daphne.port}"
    agents: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        # given two enrolled agents, online
        for name in ("one", "two"):
            root = tmp_path / name
            token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
            agents.append((_agent_start(root, server, token.json()["token"]), root))
        wait_for(
            lambda: Host.objects.filter(status=HostStatus.ONLINE).count() == 2, "both online", 60
        )
        before = dict(Host.objects.values_list("pk", "connection_id"))

        # when: daphne stalls for 90 s, then goes on
        assert daphne.process is not None
        daphne.process.send_signal(signal.SIGSTOP)
        time.sleep(OUTAGE_SECONDS)
        assert not any(_connected(root) for _, root in agents)
        daphne.process.send_signal(signal.SIGCONT)
        resumed = time.monotonic()

        # then: both agents are connected again within a minute, on new sockets, still running
        def both_back() -> bool:
            return all(_connected(root) for _, root in agents)

        wait_for(both_back, "both agents to reconnect", BACK_WITHIN_SECONDS)
        seconds = time.monotonic() - resumed
        time.sleep(5)  # and they stay
        assert both_back()
        assert [process.poll() for process, _ in agents] == [None, None]
        after = dict(Host.objects.values_list("pk", "connection_id"))
        assert all(after[pk] and after[pk] != before[pk] for pk in before)
        print(f"both agents back {seconds:.1f} s after a {OUTAGE_SECONDS} s SIGSTOP")
    finally:
        if daphne.process is not None and daphne.process.poll() is None:
            daphne.process.send_signal(signal.SIGCONT)
        for process, root in agents:
            _agent_end(process, root)
        daphne.kill()
