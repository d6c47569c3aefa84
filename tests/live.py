"""A live server for tests that speak to it over real sockets, and a hand-driven agent.

``LiveServer`` is a real daphne (``config.asgi``) in a subprocess on a free loopback port,
sharing the test database (so its tests need ``django_db(transaction=True)``) and talking to
this process through the Redis channel layer. It starts with short settings (``LIVE_SETTINGS``)
that the ``daphne_live`` fixture (tests/conftest.py) also applies to this process, where the
API, the poster, the reaper and maturity run: both sides agree on every window.

``RealAgent`` is the real agent (``python -m agent.cli run``) in a subprocess, enrolled with a
real token, for tests that need an honest host end to end.

``WireAgent`` is a host agent driven by the test, message by message: it enrolls over HTTP with
a real enrollment token, connects to ``/ws/agent/`` with the real credential (the ``websockets``
client the agent itself uses) and speaks docs/protocol.md — honestly or not, as the test says.
Nothing of the server is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hosts.models import Host, HostStatus
from tests.conftest import blob_dir_use
from tests.hosts.test_agent_end_to_end import ROOT, Daphne, agent_cli, free_port, wait_for

RUNNER_IMAGE = os.environ.get("COMMUNIPUTE_RUNNER_IMAGE", "communipute/runner:latest")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# Short windows so that a hostile host's whole story fits in seconds; every one is a setting
# read from the environment (config/settings.py), so daphne and the test agree.
LIVE_SETTINGS: dict[str, int] = {
    "HOST_HEARTBEAT_SECONDS": 1,
    "HOST_OFFLINE_AFTER_SECONDS": 30,
    "HOST_USAGE_REPORT_SECONDS": 1,
    "HOST_QUARANTINE_FLAGS": 3,
    "JOB_LEASE_SECONDS": 3,
    "JOB_OFFER_TTL_SECONDS": 10,
    "JOB_STOP_GRACE_SECONDS": 1,
    "JOB_PREPARE_MAX_SECONDS": 2,
    "JOB_LATE_UPLOAD_SECONDS": 3,
    "EARNINGS_DISPUTE_WINDOW_SECONDS": 1,
    "PAYOUT_MIN_MICROS": 1,
}

# Host rates under which counters cost a round figure: 10 µcr per CPU-ms, 5 per wall-ms at
# the jobs' 512 MB (cost below), exact with no rounding.
RATES = {
    "cpu_core_hour_micros": 36_000_000,
    "memory_gb_hour_micros": 36_000_000,
    "gpu_hour_micros": 0,
}


def cost(cpu_ms: int, wall_ms: int) -> int:
    """What counters cost at RATES."""
    return 10 * cpu_ms + 5 * wall_ms


SPECS: dict[str, Any] = {
    "cpu_model": "Hostile CPU",
    "arch": "x86_64",
    "cpus": 8,
    "memory_mb": 16384,
    "disk_free_mb": 100_000,
    "os": "linux",
    "os_version": "6.1",
    "gpus": [],
    "docker_available": True,
}


class LiveServer(Daphne):
    """daphne with ``LIVE_SETTINGS`` (and any overrides) in its environment."""

    def __init__(self, log: Path, overrides: dict[str, int | str] | None = None) -> None:
        super().__init__(free_port(), log)
        self.media_root: Path | None = None
        self.env.update({name: str(value) for name, value in LIVE_SETTINGS.items()})
        self.env.update({name: str(value) for name, value in (overrides or {}).items()})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/agent/"

    def restart(self) -> None:
        self.kill()
        self.start()

    def log_tail(self, size: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""


def live_settings_apply(settings: Any, server: LiveServer) -> LiveServer:
    """This process gets the shared server's settings (LIVE_SETTINGS and its media folder)."""
    for name, value in LIVE_SETTINGS.items():
        setattr(settings, name, value)
    settings.MEDIA_ROOT = server.media_root
    blob_dir_use(settings, Path(str(server.media_root)) / "blobs")
    return server


def live_server_start(tmp_path: Path, settings: Any, **overrides: int) -> LiveServer:
    """Start a LiveServer with LIVE_SETTINGS and ``overrides``, applied to this process too
    (``settings``: pytest-django's fixture), media under ``tmp_path``."""
    for name, value in {**LIVE_SETTINGS, **overrides}.items():
        setattr(settings, name, value)
    settings.MEDIA_ROOT = tmp_path / "media"
    blob_dir_use(settings, tmp_path / "media" / "blobs")
    server = LiveServer(
        tmp_path / "daphne.log",
        {
            **overrides,
            "MEDIA_ROOT": str(tmp_path / "media"),
            "BLOB_DIR": str(tmp_path / "media" / "blobs"),
        },
    )
    server.media_root = tmp_path / "media"
    server.start()
    return server


class RealAgent:
    """One enrolled host running the real agent in a subprocess (``docker`` or ``process``)."""

    def __init__(
        self,
        root: Path,
        server: str,
        token: str,
        manager: str = "docker",
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.log_path = root / "agent.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COMMUNIPUTE_")},
            "PYTHONPATH": str(ROOT),
            "COMMUNIPUTE_AGENT_CONFIG": str(root / "agent.json"),
            "COMMUNIPUTE_WORK_DIR": str(root / "work"),
            "COMMUNIPUTE_RUNNER_IMAGE": RUNNER_IMAGE,
            "COMMUNIPUTE_JOB_MANAGER": manager,
            "COMMUNIPUTE_ALLOW_UNISOLATED": "1" if manager == "process" else "0",
            "COMMUNIPUTE_BACKOFF_INITIAL_SECONDS": "0.2",
            "COMMUNIPUTE_BACKOFF_MAX_SECONDS": "1",
            **(env or {}),
        }
        if CA_BUNDLE.is_file():
            self.env["COMMUNIPUTE_PIP_CERT"] = str(CA_BUNDLE)
        enrolled = agent_cli(self.env, "enroll", "--server", server, "--token", token)
        assert enrolled.returncode == 0, enrolled.stderr
        enrollment = json.loads((root / "agent.json").read_text())
        self.host_id = int(enrollment["host_id"])
        self.install_id = str(enrollment["install_id"])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> None:
        """Run the agent; ``wait``: until its host is online (in this process's database)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            wait_for(
                lambda: Host.objects.filter(pk=self.host_id, status=HostStatus.ONLINE).exists(),
                f"host {self.host_id} online",
            )

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        if signum == signal.SIGKILL:
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL (after a SIGCONT, should the test have stopped it) and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)

    def containers(self, *, own: bool = False) -> list[Any]:
        """The containers labelled with this host id (``own``: and this install's id too)."""
        import docker

        client = docker.from_env()
        labels = [f"communipute.agent={self.host_id}"]
        if own:
            labels.append(f"communipute.install={self.install_id}")
        return list(client.containers.list(all=True, filters={"label": labels}))

    def containers_remove(self) -> None:
        for container in self.containers():
            container.remove(force=True)


class Beat:
    """What Celery beat does beside the server, in a thread of this process, every
    ``period`` seconds: the reaper pass, the usage poster and the offline marker. It keeps
    going while daphne is stopped, as beat and its workers would."""

    def __init__(self, period: float = 1.0) -> None:
        self.period = period
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Beat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        from django.db import connection

        from hosts.services import hosts_mark_stale_offline
        from jobs.tasks import jobs_reap_pass, usage_charges_post

        try:
            while not self._stop.wait(self.period):
                try:
                    jobs_reap_pass()
                    usage_charges_post()
                    hosts_mark_stale_offline()
                except Exception as exc:  # kept for the test to see; the next tick goes on
                    self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()


class TcpProxy:
    """A loopback TCP forwarder in front of the server, whose connections the test can cut
    (a network drop: the server stays up, both ends see the connection die)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._refusing = False
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, *, refuse: bool = False) -> int:
        """Close every open connection; with ``refuse``, close new ones too until ``heal``."""
        with self._lock:
            self._refusing = refuse
            dropped, self._open = self._open, []
        for sock in dropped:
            self._close(sock)
        return len(dropped) // 2

    def heal(self) -> None:
        with self._lock:
            self._refusing = False

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                self._close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                self._close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


class Closed(Exception):
    """The server closed the socket; ``code`` is its close code."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class WireAgent:
    """One enrolled host, its agent played by the test over a real websocket."""

    def __init__(self, server: LiveServer, host_id: int, credential: str) -> None:
        self.server = server
        self.host_id = host_id
        self.credential = credential
        self.socket: ClientConnection | None = None
        self._stack = ExitStack()
        self.inbox: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}

    @classmethod
    def enroll(cls, server: LiveServer, owner_api: Any, name: str = "hostile") -> WireAgent:
        """The owner makes an enrollment token (API); the machine registers with it (HTTP to
        daphne) and gets its credential, as ``communipute-agent enroll`` does."""
        token = owner_api.post("/api/v1/hosts/enrollments/", {}, format="json").json()["token"]
        registered = requests.post(
            f"{server.url}/api/v1/agent/register/",
            json={"enrollment_token": token, "specs": SPECS, "name": name},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        body = registered.json()
        return cls(server, int(body["host_id"]), str(body["credential"]))

    # --- the connection -------------------------------------------------------------------

    def connect(self, running_jobs: list[dict[str, int]] | None = None) -> dict[str, Any]:
        """Open the socket and say hello; returns the welcome's data."""
        self.close()
        self.socket = self._stack.enter_context(
            connect(
                self.server.ws_url,
                additional_headers={"Authorization": f"Bearer {self.credential}"},
                open_timeout=10,
                max_size=2**20,
            )
        )
        self.send(
            "hello",
            {
                "agent_version": "hostile-1",
                "protocol_version": 1,
                "specs": SPECS,
                "running_jobs": running_jobs or [],
                "is_available": True,
                "is_draining": False,
            },
        )
        self.welcome = self.expect(lambda m: m["type"] == "welcome")["data"]
        return self.welcome

    def close(self) -> None:
        self._stack.close()
        self.socket = None

    def hang_up(self, timeout: float = 10) -> None:
        """Close the socket and wait until the server has recorded the disconnect (the host
        offline: its disconnect transaction done), so nothing of it is still writing when a
        test's database is flushed."""
        self.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not Host.objects.filter(pk=self.host_id).exclude(status=HostStatus.OFFLINE).exists():
                return
            time.sleep(0.05)

    def send(self, message_type: str, data: dict[str, Any], message_id: str | None = None) -> str:
        """Send one envelope as JSON text (``NaN`` and ``Infinity`` as Python writes them)."""
        assert self.socket is not None, "not connected"
        message_id = message_id or uuid.uuid4().hex
        self.socket.send(json.dumps({"type": message_type, "id": message_id, "data": data}))
        return message_id

    def send_raw(self, text: str) -> None:
        assert self.socket is not None, "not connected"
        self.socket.send(text)

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        assert self.socket is not None, "not connected"
        try:
            raw = self.socket.recv(timeout=timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            raise Closed(closed.rcvd.code if closed.rcvd else None) from None
        message = json.loads(raw)
        assert isinstance(message, dict)
        return message

    def expect(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """The first message (already received or to come) that matches; others are kept."""
        for index, message in enumerate(self.inbox):
            if match(message):
                return self.inbox.pop(index)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            received = self._receive(left)
            if received is None:
                break
            if match(received):
                return received
            self.inbox.append(received)
        raise AssertionError(f"no matching message within {timeout} s; got {self.inbox}")

    def closed_code(self, timeout: float = 10) -> int | None:
        """Wait for the server to close the socket; its close code."""
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                message = self._receive(left)
                if message is not None:
                    self.inbox.append(message)
        except Closed as closed:
            self.socket = None
            return closed.code
        raise AssertionError(f"the server kept the socket open for {timeout} s")

    def drain_inbox(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything the server sent so far (waiting ``seconds`` for stragglers)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            message = self._receive(left)
            if message is None:
                break
            self.inbox.append(message)
        messages, self.inbox = self.inbox, []
        return messages

    # --- requests and their answers --------------------------------------------------------

    def ask(self, message_type: str, data: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Send a job message and wait for its answer: its ``ack`` / ``usage.ack`` /
        ``log.ack``, or the ``error`` naming it."""
        message_id = self.send(message_type, data)

        def answers(message: dict[str, Any]) -> bool:
            body = message.get("data", {})
            if message["type"] == "error":
                return bool(body.get("ref_id") == message_id)
            if message_type == "job.usage":
                return bool(message["type"] == "usage.ack" and body.get("seq") == data.get("seq"))
            if message_type == "job.log":
                return bool(message["type"] == "log.ack" and body.get("job_id") == data["job_id"])
            return bool(message["type"] == "ack" and body.get("ack_id") == message_id)

        return self.expect(answers, timeout)

    def offer(self, job_id: int, timeout: float = 10) -> dict[str, Any]:
        offer = self.expect(
            lambda m: m["type"] == "job.offer" and m["data"]["job_id"] == job_id, timeout
        )["data"]
        assert isinstance(offer, dict)
        return offer

    def run(self, job_id: int, attempt: int = 1) -> None:
        """Accept the offered attempt and report it running (the server stamps started_at)."""
        self.offer(job_id)
        ref = {"job_id": job_id, "attempt": attempt}
        assert self.ask("job.accept", ref)["type"] == "ack"
        assert self.ask("job.started", {**ref, "phase": "running"})["type"] == "ack"

    def usage(
        self,
        job_id: int,
        seq: int,
        cpu: float,
        wall: float,
        *,
        attempt: int = 1,
        **extra: Any,
    ) -> dict[str, Any]:
        return self.ask(
            "job.usage",
            {
                "job_id": job_id,
                "attempt": attempt,
                "seq": seq,
                "cpu_seconds": cpu,
                "wall_seconds": wall,
                "memory_peak_mb": 64,
                "memory_current_mb": 32,
                "gpu_seconds": 0.0,
                **extra,
            },
        )

    def heartbeat(self, running_jobs: list[dict[str, int]]) -> None:
        self.send(
            "heartbeat",
            {
                "load": 0.1,
                "is_available": True,
                "unavailable_reason": "",
                "running_jobs": running_jobs,
            },
        )

    def keep_alive(self, seconds: float, running_jobs: list[dict[str, int]]) -> None:
        """Go on heartbeating (leases renewed) for ``seconds``, keeping what arrives."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.heartbeat(running_jobs)
            pause = min(0.5, left)
            end = time.monotonic() + pause
            while (wait := end - time.monotonic()) > 0:
                message = self._receive(wait)
                if message is None:
                    break
                self.inbox.append(message)

    def upload(self, job_id: int, attempt: int, name: str, content: bytes) -> requests.Response:
        """An output upload with tus and the host credential, as the agent's uploader: the
        creation's refusal, or its answer when complete at once, or the one PATCH's (204)."""
        headers = {"Authorization": f"Bearer {self.credential}", "Tus-Resumable": "1.0.0"}
        metadata = {
            "job_id": str(job_id),
            "attempt": str(attempt),
            "name": name,
            "sha256": hashlib.sha256(content).hexdigest(),
        }
        created = requests.post(
            f"{self.server.url}/api/v1/agent/uploads/",
            headers={
                **headers,
                "Upload-Length": str(len(content)),
                "Upload-Metadata": ",".join(
                    f"{key} {base64.b64encode(value.encode()).decode()}"
                    for key, value in metadata.items()
                ),
            },
            timeout=10,
        )
        if created.status_code != 201 or created.headers["Upload-Offset"] == str(len(content)):
            return created
        return requests.patch(
            f"{self.server.url}{created.headers['Location']}",
            data=content,
            headers={
                **headers,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=10,
        )


__all__ = [
    "LIVE_SETTINGS",
    "Beat",
    "Closed",
    "LiveServer",
    "TcpProxy",
    "WireAgent",
    "live_server_start",
    "live_settings_apply",
    "wait_for",
]
