import socket
import subprocess
import sys
import threading

import pytest

from agent import specs
from agent.protocol import HostSpecs, payload_check
from hosts.specs import specs_clean


def test_collected_specs_have_the_protocol_shape_and_pass_the_servers_checks(tmp_path, monkeypatch):
    monkeypatch.setattr(specs, "docker_available", lambda: False)

    collected = specs.specs_collect(tmp_path / "not-yet-created")

    payload_check(HostSpecs, collected)
    assert specs_clean(collected) == collected
    assert collected["cpus"] >= 1
    assert collected["os"] == sys.platform.replace("win32", "windows")
    assert collected["arch"] in {"x86_64", "arm64", "riscv64", "ppc64le", "s390x"}


def _fake_docker(path, reply):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve():
        connection, _ = server.accept()
        with connection:
            connection.recv(1024)
            connection.sendall(reply)
        server.close()

    threading.Thread(target=serve, daemon=True).start()


@pytest.mark.parametrize(
    ("reply", "available"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK", True),
        (b"HTTP/1.1 500 Oops\r\n\r\n", False),
    ],
)
def test_docker_is_probed_with_a_ping_on_its_socket(tmp_path, monkeypatch, reply, available):
    path = tmp_path / "docker.sock"
    _fake_docker(path, reply)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")

    assert specs.docker_available() is available


def test_no_docker_socket_means_no_docker(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'missing.sock'}")

    assert specs.docker_available() is False


def test_the_agent_imports_nothing_from_django():
    code = (
        "import sys, agent.cli, agent.client, agent.specs, agent.idle, agent.gpu;"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('django', 'hosts', 'config')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
