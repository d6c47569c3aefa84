import json
import logging
import os
import re
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent import cli
from agent.control import state_write


class Registry(BaseHTTPRequestHandler):
    """A stand-in for POST /api/v1/agent/register/."""

    requests: list[Any] = []
    reply: tuple[int, Any] = (201, {"host_id": 42, "credential": "cph_issued"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Registry.requests.append((self.path, body))
        status, payload = Registry.reply
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def registry():
    Registry.requests = []
    Registry.reply = (201, {"host_id": 42, "credential": "cph_issued"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def config_path(tmp_path, monkeypatch):
    path = tmp_path / "conf" / "agent.json"
    monkeypatch.setenv("COMMUNIPUTE_AGENT_CONFIG", str(path))
    monkeypatch.setattr("agent.specs.docker_available", lambda: False)
    return path


def test_enroll_stores_the_credential_privately(registry, config_path, capsys):
    # when
    code = cli.main(["enroll", "--server", registry + "/", "--token", "cpe_abc", "--name", "lab"])

    # then
    assert code == 0
    path, body = Registry.requests[0]
    assert path == "/api/v1/agent/register/"
    assert (body["enrollment_token"], body["name"]) == ("cpe_abc", "lab")
    assert body["specs"]["cpus"] >= 1
    stored = json.loads(config_path.read_text())
    install_id = stored.pop("install_id")
    assert stored == {"server": registry, "host_id": 42, "credential": "cph_issued"}
    assert re.fullmatch(r"[0-9a-f]{32}", install_id)  # this installation's, for its labels
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_path.parent.stat().st_mode) == 0o700
    assert "enrolled as host 42" in capsys.readouterr().out


def test_a_refused_enrollment_says_why_and_writes_nothing(registry, config_path, capsys):
    Registry.reply = (
        403,
        {
            "error": {
                "code": "enrollment_token_used",
                "message": "this enrollment token was already used",
                "fields": {},
            }
        },
    )

    code = cli.main(["enroll", "--server", registry, "--token", "cpe_abc"])

    assert code == 1
    assert capsys.readouterr().err == (
        "enrollment failed: this enrollment token was already used "
        "(enrollment_token_used, HTTP 403)\n"
    )
    assert not config_path.exists()


def test_an_unreachable_server_is_reported(config_path, capsys):
    code = cli.main(["enroll", "--server", "http://127.0.0.1:9", "--token", "cpe_abc"])

    assert code == 1
    assert capsys.readouterr().err.startswith("enrollment failed: cannot reach http://127.0.0.1:9")


def test_enrolling_twice_needs_force(registry, config_path, capsys):
    assert cli.main(["enroll", "--server", registry, "--token", "cpe_1"]) == 0
    Registry.reply = (201, {"host_id": 43, "credential": "cph_new"})

    refused = cli.main(["enroll", "--server", registry, "--token", "cpe_2"])
    forced = cli.main(["enroll", "--server", registry, "--token", "cpe_2", "--force"])

    assert (refused, forced) == (1, 0)
    assert json.loads(config_path.read_text())["host_id"] == 43


def test_run_without_enrollment_refuses(config_path, capsys):
    assert cli.main(["run"]) == 1
    assert "not enrolled" in capsys.readouterr().err


def test_status_reports_the_running_agents_state(registry, config_path, capsys):
    # given
    cli.main(["enroll", "--server", registry, "--token", "cpe_1"])
    capsys.readouterr()
    state_write(
        config_path.with_name("agent.state.json"),
        {
            "pid": os.getpid(),
            "running": True,
            "connected": True,
            "last_error": "",
            "is_available": False,
            "unavailable_reason": "user_active",
            "drain": None,
            "is_server_draining": True,
            "running_jobs": [],
            "unacknowledged": 0,
            "slots": 4,
            "readiness": {"ready": False, "reason": "no runner image", "isolation": "docker"},
        },
    )

    # when
    code = cli.main(["status"])

    # then
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        f"host 42 at {registry} (config {config_path})",
        f"agent: running (pid {os.getpid()}), connected",
        "availability: unavailable (user_active); draining: by the owner",
        "running jobs: 0 of 4 slots; unacknowledged messages: 0",
        "ready: no (no runner image); isolation: docker",
    ]
    assert cli.main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"]["unavailable_reason"] == "user_active"


def test_status_without_a_running_agent(registry, config_path, capsys):
    cli.main(["enroll", "--server", registry, "--token", "cpe_1"])
    capsys.readouterr()

    assert cli.main(["status"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "agent: not running"


def test_drain_writes_the_request_for_the_agent(config_path, capsys):
    control = config_path.with_name("agent.drain")

    assert cli.main(["drain"]) == 0
    assert control.read_text() == "drain\n"
    assert cli.main(["drain", "--cancel"]) == 0
    assert not control.exists()
    # with no agent running, an exit request has nothing to stop
    assert cli.main(["drain", "--exit"]) == 0
    assert not control.exists()


@pytest.fixture
def debug_logging():
    loggers = [logging.getLogger(name) for name in ("websockets", "websockets.client", "agent")]
    saved = [(logger.level, list(logger.filters)) for logger in loggers]
    yield
    for logger, (level, filters) in zip(loggers, saved, strict=True):
        logger.setLevel(level)
        logger.filters[:] = filters


def test_debug_logs_never_show_the_host_credential(debug_logging, caplog):
    # given: the agent logging at DEBUG, as someone chasing a problem runs it
    cli._logging_setup("debug")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="websockets")
    secret = "cph_" + "s3cr3t" * 7

    # when: websockets logs the handshake's headers, and the agent names its credential
    logging.getLogger("websockets.client").debug("> %s: %s", "Authorization", f"Bearer {secret}")
    logging.getLogger("agent").debug("using %s", secret)

    # then
    assert secret not in caplog.text
    assert [record.getMessage() for record in caplog.records] == [
        "> Authorization: Bearer [redacted]",
        "using [redacted]",
    ]


def test_run_gives_an_enrollment_without_an_install_id_one_and_keeps_it(config_path, monkeypatch):
    # given: a config enrolled before install ids existed
    config_path.parent.mkdir(mode=0o700)
    config_path.write_text(
        json.dumps({"server": "http://127.0.0.1:9", "host_id": 5, "credential": "cph_old"})
    )
    config_path.chmod(0o600)
    seen = []

    async def run(self):
        seen.append(self.config.install_id)
        return 0

    monkeypatch.setattr("agent.client.AgentClient.run", run)

    # when: the agent starts twice
    first = cli.main(["run", "--job-manager", "none"])
    second = cli.main(["run", "--job-manager", "none"])

    # then: one install id, generated on the first start, written down and used by both
    stored = json.loads(config_path.read_text())
    assert (first, second) == (0, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", stored["install_id"])
    assert seen == [stored["install_id"], stored["install_id"]]
    assert (stored["host_id"], stored["credential"]) == (5, "cph_old")
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
