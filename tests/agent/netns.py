"""A data server only a pool's rules let the agent reach: a network namespace made here, a
veth pair into it, and a plain HTTP server inside on a 10.x address (docs/pools.md "Inputs
stay inside"). It serves the files of a folder and writes every request (path, headers) to
a log this process reads. Needs root and ``ip`` (iproute2); ``inside_server`` skips without.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# The server inside the namespace: stdlib only, run with this interpreter.
_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

address, root, log = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        with log.open("a") as handle:
            handle.write(json.dumps({"path": self.path, "headers": dict(self.headers)}) + "\n")
        target = root / self.path.lstrip("/").split("?", 1)[0]
        if not target.is_file() or root not in target.resolve().parents:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer((address, 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@dataclass
class InsideServer:
    namespace: str
    address: str  # inside the namespace: reachable from this host through the veth only
    port: int
    root: Path
    log: Path
    host_address: str = ""  # this host's end of the veth pair, inside ``network``

    def url(self, path: str) -> str:
        return f"http://{self.address}:{self.port}/{path.lstrip('/')}"

    @property
    def network(self) -> str:
        """The /30 of the veth pair."""
        return str(ipaddress.ip_network(f"{self.address}/30", strict=False))

    def put(self, name: str, data: bytes) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, 0o644)

    def requests(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def netns_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a network namespace and a veth pair)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    probe = f"cptp{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"cannot make a network namespace: {exc}"
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        _ip("netns", "del", probe)
    return None


@contextlib.contextmanager
def inside_server(folder: Path) -> Iterator[InsideServer]:
    """The server in a fresh namespace; everything it made is removed on the way out."""
    problem = netns_problem()
    if problem is not None:
        pytest.skip(problem)
    tag = secrets.token_hex(3)
    namespace, outer, inner = f"cpt{tag}", f"cpo{tag}", f"cpi{tag}"
    second, third = 200 + secrets.randbelow(50), secrets.randbelow(64) * 4
    base = f"10.{second}.{secrets.randbelow(250)}"
    host_side, address = f"{base}.{third + 1}", f"{base}.{third + 2}"
    root, log = folder / "served", folder / "requests.jsonl"
    root.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    root.chmod(0o755)
    process: subprocess.Popen[str] | None = None
    try:
        _ip("netns", "add", namespace)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", namespace)
        _ip("addr", "add", f"{host_side}/30", "dev", outer)
        _ip("link", "set", outer, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/30", "dev", inner)
        _ip("-n", namespace, "link", "set", inner, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        command = ["ip", "netns", "exec", namespace, sys.executable, "-c", _SERVER]
        process = subprocess.Popen(
            [*command, address, str(root), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            problem = process.stderr.read() if process.stderr is not None else ""
            raise RuntimeError(f"the inside server did not start: {problem}")
        server = InsideServer(namespace, address, int(line), root, log, host_side)
        _wait_reachable(server)
        yield server
    finally:
        if process is not None:
            process.kill()
            process.wait(5)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _ip("link", "del", outer)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _ip("netns", "del", namespace)


def _wait_reachable(server: InsideServer) -> None:
    import socket

    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((server.address, server.port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
