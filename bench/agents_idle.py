"""Idle agents on one daphne: the server CPU each idle agent costs per second and each
heartbeat, and the memory each socket.

N simulated agents (default 1,000), enrolled in bulk through the ORM (hosts and credentials,
no jobs), connect over real websockets (``websockets``, the agent's library, pinging as the
agent of their style does) to one daphne subprocess (``--ping-interval 20
--ping-timeout 20``, as deploy/ runs it) serving the project's ASGI application on PostgreSQL
and the Redis channel layer. The agents run in a separate process (asyncio, every socket in
one loop; the file-descriptor limit raised with ``resource``): each says ``hello``, then
heartbeats as an idle agent of its ``--styles`` does and sends nothing else:

- ``old``: every ``--heartbeat`` seconds (default: the server's HOST_HEARTBEAT_SECONDS, 10 s),
  at its own phase, and pings every 20 s whatever the server sends: an agent from before the
  welcome's ``heartbeat_idle_seconds``;
- ``new``: every ``heartbeat_idle_seconds`` of its welcome (HOST_HEARTBEAT_IDLE_SECONDS,
  300 s; a server that sends none: ``heartbeat_seconds``), at its own phase, and pings only a
  server silent for ``SERVER_SILENCE_SECONDS`` (agent/keepalive.py): the agent now, whose state
  does not change;
- ``pings``: heartbeats as ``new``, pings as ``old``: the agent before agent/keepalive.py.

It prints, per server and style:

- **CPU per idle agent per second** and **per heartbeat**: daphne's CPU time (psutil, user +
  system) over the measured window, divided by the agents and the window's seconds, and by the
  heartbeats the agents sent in it (everything an idle connection costs daphne charged to its
  heartbeats: its pings, daphne's per-connection timers, the presence refreshes), and the
  share of a core that is;
- **RSS per connection**: daphne's resident memory once every agent is welcomed minus the same
  after the first ``--warm`` agents (so imports and the first database connections are not
  counted), divided by the agents connected in between;
- that every host's ``last_seen_at`` is within a presence period (1.5 heartbeat periods) and a
  flush of the end of the window, and the errors or closes the agents saw.

``--against REV`` first runs the same measurement against daphne from ``git archive REV`` (the
baseline, e.g. ``main``) on the same database and hosts, with the agents of
``--against-styles`` (default ``pings``, the agent before agent/keepalive.py), then against
this checkout.
``--tracemalloc N`` instead runs daphne under ``tracemalloc`` (N frames) and prints where the
memory the connections hold was allocated (the snapshot after all minus the one after the
warm agents, by file and line).

Run: ``python -m bench.agents_idle [--agents N] [--seconds S] [--styles old,pings,new]
[--against REV [--against-styles pings]]``; needs PostgreSQL (``DATABASE_URL``) and Redis
(``REDIS_URL``). It uses a scratch database and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import psutil

from bench._django import django_setup, scratch_database
from bench._processes import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


# As deploy/systemd and scripts/cluster.py run daphne: a socket silent for 20 s is pinged, and
# dropped 20 s after a ping it does not answer (docs/operations.md).
DAPHNE_PINGS = ["--ping-interval", "20", "--ping-timeout", "20"]
# An older agent pinged every 20 s whatever the server sent; the agent now pings only a server
# silent for SERVER_SILENCE_SECONDS (agent/keepalive.py), so daphne's pings are the only ones.
OLD_AGENT_PING_SECONDS = 20.0


@dataclass(frozen=True)
class Measured:
    server: str
    style: str
    agents: int
    seconds: float
    heartbeats: int
    server_cpu: float  # CPU seconds daphne used in the window
    rss_per_connection: float  # bytes
    stale_hosts: int  # hosts whose last_seen_at is older than a period and a flush
    problems: list[str]

    @property
    def cpu_per_heartbeat_us(self) -> float:
        return self.server_cpu / max(1, self.heartbeats) * 1e6

    @property
    def cpu_per_agent_second_us(self) -> float:
        return self.server_cpu / max(1, self.agents) / self.seconds * 1e6

    @property
    def cores(self) -> float:
        return self.server_cpu / self.seconds

    def line(self) -> str:
        per_heartbeat = (
            f"{self.cpu_per_heartbeat_us:,.0f} µs per heartbeat" if self.heartbeats else "—"
        )
        return (
            f"{self.server}, {self.style} agents: {self.agents:,} idle, {self.heartbeats:,} "
            f"heartbeats in {self.seconds:.0f} s; daphne CPU {self.cpu_per_agent_second_us:.1f} µs "
            f"per agent per second, {per_heartbeat} ({self.cores:.3f} of a core); RSS "
            f"{self.rss_per_connection / 1024:.1f} KiB per connection; hosts not seen lately "
            f"{self.stale_hosts}; problems {len(self.problems)}"
        )


# --- set-up (in the bench process, on the scratch database) -----------------------------------


def enroll(agents: int) -> list[tuple[int, str]]:
    """``agents`` hosts of one owner, each with a credential, in bulk: (host id, credential)."""
    from accounts.models import User
    from accounts.tokens import secret_issue
    from hosts.models import Host, HostCredential
    from hosts.services import CREDENTIAL_KIND
    from hosts.specs import specs_clean

    owner = User.objects.create_user(username="idle-owner", email="idle@bench.invalid")
    specs = specs_clean(_specs())
    hosts = []
    for n in range(agents):
        host = Host(owner=owner, name=f"idle-{n}")
        host.set_specs(specs)
        hosts.append(host)
    Host.objects.bulk_create(hosts, batch_size=1000)
    secrets = [secret_issue(CREDENTIAL_KIND) for _ in hosts]
    HostCredential.objects.bulk_create(
        [
            HostCredential(host=host, prefix=secret.prefix, digest=secret.digest)
            for host, secret in zip(hosts, secrets, strict=True)
        ],
        batch_size=1000,
    )
    return [(host.pk, secret.plaintext) for host, secret in zip(hosts, secrets, strict=True)]


def _specs() -> dict[str, Any]:
    return {
        "cpu_model": "bench",
        "arch": "x86_64",
        "cpus": 4,
        "memory_mb": 8192,
        "disk_free_mb": 100_000,
        "os": "linux",
        "os_version": "bench",
        "gpus": [],
        "docker_available": True,
    }


def _stale_hosts(since: Any) -> int:
    from django.db.models import Q

    from hosts.models import Host

    return Host.objects.filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=since)).count()


# --- the simulated agents (a subprocess: ``--simulate``) ----------------------------------------


def _nofile_raise() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Agents:
    """Every simulated agent in one event loop; talks to the bench process over stdin/stdout:
    ``warm``/``connected`` when so many are welcomed, ``mark`` answered with the heartbeats
    sent so far, ``stop`` to close."""

    def __init__(self, port: int, heartbeat: float, style: str) -> None:
        self.port = port
        self.heartbeat = heartbeat
        self.style = style
        self.sent = 0
        self.problems: list[str] = []
        self.sockets: list[Any] = []
        self.connect_retries = 0

    async def open(self, credential: str) -> None:
        from websockets.asyncio.client import ClientConnection, connect

        from agent.client import PING_TIMEOUT_SECONDS, SERVER_SILENCE_SECONDS
        from agent.keepalive import QuietClientConnection
        from agent.protocol import PROTOCOL_VERSION, encode

        if self.style == "new":  # "pings": the agent before agent/keepalive.py
            keepalive: type[ClientConnection] = QuietClientConnection
            interval, timeout = SERVER_SILENCE_SECONDS, PING_TIMEOUT_SECONDS
        else:
            keepalive, interval, timeout = ClientConnection, OLD_AGENT_PING_SECONDS, 20.0

        for attempt in range(10):
            try:
                ws = await connect(
                    f"ws://127.0.0.1:{self.port}/ws/agent/",
                    additional_headers={"Authorization": f"Bearer {credential}"},
                    open_timeout=120,
                    create_connection=keepalive,
                    ping_interval=interval,
                    ping_timeout=timeout,
                )
                break
            except Exception:  # refused or dropped while the server is busy: again
                if attempt == 9:
                    raise
                self.connect_retries += 1
                await asyncio.sleep(1 + attempt)
        hello = {
            "agent_version": "bench",
            "protocol_version": PROTOCOL_VERSION,
            "specs": _specs(),
            "running_jobs": [],
            "is_available": True,
            "is_draining": False,
        }
        await ws.send(encode("hello", hello))
        while (welcome := json.loads(await ws.recv()))["type"] != "welcome":
            pass
        period = self.heartbeat
        if self.style != "old":
            data = welcome["data"]
            period = float(data.get("heartbeat_idle_seconds", data["heartbeat_seconds"]))
        self.sockets.append(ws)
        asyncio.get_running_loop().create_task(self._read(ws))
        asyncio.get_running_loop().create_task(self._beat(ws, period))

    async def _read(self, ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] in ("error", "job.cancel"):
                    self.problems.append(f"{message['type']}: {message['data']}")
        if ws.close_code not in (None, 1000):
            self.problems.append(f"closed by the server: {ws.close_code}")

    async def _beat(self, ws: Any, period: float) -> None:
        from agent.protocol import encode

        heartbeat = {
            "load": 0.01,
            "is_available": True,
            "unavailable_reason": "",
            "running_jobs": [],
        }
        if self.style != "old":  # the one heartbeat after the welcome, then its idle period
            await ws.send(encode("heartbeat", heartbeat))
        await asyncio.sleep(random.uniform(0, period))
        next_at = time.monotonic()
        while True:
            try:
                await ws.send(encode("heartbeat", heartbeat))
            except Exception:
                return
            self.sent += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def _simulate(
    port: int, heartbeat: float, style: str, warm: int, credentials: list[str]
) -> None:
    agents = _Agents(port, heartbeat, style)
    lines = asyncio.Queue[str]()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: lines.put_nowait(sys.stdin.readline().strip()))

    async def opened(batch: list[str]) -> None:
        for start in range(0, len(batch), 50):
            await asyncio.gather(*(agents.open(c) for c in batch[start : start + 50]))

    def say(message: dict[str, Any]) -> None:
        print(json.dumps(message), flush=True)

    await opened(credentials[:warm])
    say({"warm": len(agents.sockets)})
    await lines.get()
    await opened(credentials[warm:])
    say({"connected": len(agents.sockets), "retries": agents.connect_retries})
    while await lines.get() != "stop":
        say(
            {
                "sent": agents.sent,
                "problems": agents.problems[:20],
                "problem_count": len(agents.problems),
            }
        )
    for ws in agents.sockets:
        with contextlib.suppress(Exception):
            await ws.close()


def simulate_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--heartbeat", type=float, required=True)
    parser.add_argument("--style", choices=["old", "pings", "new"], required=True)
    parser.add_argument("--warm", type=int, required=True)
    parser.add_argument("--credentials", required=True)
    args = parser.parse_args(argv)
    _nofile_raise()
    credentials = json.loads(Path(args.credentials).read_text())
    asyncio.run(_simulate(args.port, args.heartbeat, args.style, args.warm, credentials))


# --- one server, measured -----------------------------------------------------------------------


def _rss(process: psutil.Process) -> int:
    return int(process.memory_info().rss)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class _Simulator:
    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the simulated agents exited")
        result: dict[str, Any] = json.loads(line)
        return result

    def tell(self, line: str) -> None:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.tell("stop")
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


# daphne under tracemalloc (``--tracemalloc``): SIGUSR1 writes a snapshot to the next path.
_TRACED_DAPHNE = """
import signal, sys, tracemalloc
tracemalloc.start(int(sys.argv.pop(1)))
paths = iter(sys.argv.pop(1).split(","))
signal.signal(signal.SIGUSR1, lambda *_: tracemalloc.take_snapshot().dump(next(paths)))
from daphne.cli import CommandLineInterface
CommandLineInterface.entrypoint()
"""


def measure_server(
    label: str,
    root: Path,
    env: dict[str, str],
    credentials: Path,
    args: argparse.Namespace,
    style: str,
) -> Measured:
    """Start daphne from ``root``, connect the agents, measure one window; stop both."""
    from django.utils import timezone

    port = free_port()
    log = Path(tempfile.gettempdir()) / f"bench-agents-idle-{label.replace(' ', '-')}.log"
    snapshots = [Path(tempfile.gettempdir()) / f"bench-agents-idle-{n}.trace" for n in (1, 2)]
    launcher = [sys.executable, "-m", "daphne"]
    if args.tracemalloc:
        launcher = [sys.executable, "-c", _TRACED_DAPHNE, str(args.tracemalloc)]
        launcher.append(",".join(map(str, snapshots)))
    with log.open("wb") as output:
        daphne = subprocess.Popen(
            [
                *launcher,
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "--websocket_connect_timeout",
                "120",
                *DAPHNE_PINGS,
                "config.asgi:application",
            ],
            cwd=root,
            env={**env, "PYTHONPATH": str(root)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    simulator: _Simulator | None = None
    try:
        wait_until(lambda: _port_open(port, daphne), "daphne")
        server = psutil.Process(daphne.pid)
        simulator = _Simulator(
            [
                sys.executable,
                "-m",
                "bench.agents_idle",
                "--simulate",
                "--port",
                str(port),
                "--heartbeat",
                str(args.heartbeat),
                "--style",
                style,
                "--warm",
                str(args.warm),
                "--credentials",
                str(credentials),
            ],
            {**env, "PYTHONPATH": str(ROOT)},
        )
        warm = simulator.read()["warm"]
        time.sleep(2)
        rss_warm = _rss(server)
        _snapshot(daphne, snapshots[0], args)
        simulator.tell("go")
        connected = simulator.read()["connected"]
        time.sleep(args.heartbeat + 2)  # every agent past its first heartbeat, flushed
        rss_all = _rss(server)
        _snapshot(daphne, snapshots[1], args)
        simulator.tell("mark")
        sent_before = simulator.read()["sent"]
        cpu_before, started = _cpu(server), time.monotonic()
        profiler = _profiler(args, label, daphne.pid)
        time.sleep(args.seconds)
        if profiler is not None:
            profiler.wait(args.seconds + 30)
        simulator.tell("mark")
        cpu_after, ended = _cpu(server), time.monotonic()
        last = simulator.read()
        time.sleep(1.5)  # the last flush
        stale = _stale_hosts(timezone.now() - timedelta(seconds=1.5 * args.heartbeat + 3))
        if args.tracemalloc:
            _allocations_print(snapshots, connected - warm)
        return Measured(
            server=label,
            style=style,
            agents=connected,
            seconds=ended - started,
            heartbeats=last["sent"] - sent_before,
            server_cpu=cpu_after - cpu_before,
            rss_per_connection=(rss_all - rss_warm) / max(1, connected - warm),
            stale_hosts=stale,
            problems=last["problems"]
            + ([f"… {last['problem_count']} in all"] if last["problem_count"] > 20 else []),
        )
    finally:
        if simulator is not None:
            simulator.stop()
        daphne.terminate()
        try:
            daphne.wait(30)
        except subprocess.TimeoutExpired:
            daphne.kill()


def _snapshot(daphne: subprocess.Popen[bytes], path: Path, args: argparse.Namespace) -> None:
    if not args.tracemalloc:
        return
    path.unlink(missing_ok=True)
    daphne.send_signal(signal.SIGUSR1)
    wait_until(lambda: path.exists() and path.stat().st_size > 0, "the snapshot", timeout=300)
    time.sleep(2)  # written in full


def _allocations_print(snapshots: list[Path], connections: int) -> None:
    """What the connections added, by where it was allocated: the top 25 lines."""
    import tracemalloc

    before, after = (tracemalloc.Snapshot.load(str(path)) for path in snapshots)
    differences = after.compare_to(before, "lineno")
    total = sum(difference.size_diff for difference in differences)
    print(f"tracemalloc: {total / max(1, connections):,.0f} B per connection in all", flush=True)
    for difference in differences[:25]:
        frame = difference.traceback[0]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        per = difference.size_diff / max(1, connections)
        print(f"  {per:8,.0f} B {difference.count_diff / max(1, connections):5.1f} blocks  {where}")


def _profiler(args: argparse.Namespace, label: str, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy sampling daphne through the window (``--profile PREFIX``; install py-spy
    yourself, it is not a requirement): folded stacks in PREFIX-<server>.txt."""
    if not args.profile:
        return None
    tool = shutil.which("py-spy")
    if tool is None:
        raise SystemExit("--profile needs py-spy on PATH")
    output = f"{args.profile}-{label.replace(' ', '-')}.txt"
    command = [tool, "record", "--nonblocking", "--format", "raw", "-r", "200"]
    command += ["-d", str(int(args.seconds)), "-o", output, "--pid", str(pid)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _port_open(port: int, daphne: subprocess.Popen[bytes]) -> bool:
    import socket

    if daphne.poll() is not None:
        raise SystemExit("daphne exited")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _env(database: str) -> dict[str, str]:
    from django.db import connection

    settings = connection.settings_dict
    url = (
        f"postgres://{settings['USER']}:{settings['PASSWORD'] or ''}@{settings['HOST']}:"
        f"{settings['PORT'] or 5432}/{database}"
    )
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        "DEBUG": "0",
        # No host goes offline while the bench connects thousands of agents.
        "HOST_OFFLINE_AFTER_SECONDS": "3600",
    }


def _checkout(revision: str, into: Path) -> Path:
    """``git archive`` of ``revision`` unpacked under ``into``: the baseline's code."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], cwd=ROOT, check=True, capture_output=True
    ).stdout
    target = into / "baseline"
    target.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def measure(args: argparse.Namespace, database: str) -> list[Measured]:
    """Enroll the hosts on ``database``, then measure each server in turn (the baseline first)."""
    from django.conf import settings

    from hosts.models import Host

    _nofile_raise()
    if args.heartbeat is None:
        args.heartbeat = float(settings.HOST_HEARTBEAT_SECONDS)
    env = {**_env(database), "HOST_HEARTBEAT_SECONDS": str(int(args.heartbeat))}
    results: list[Measured] = []
    with tempfile.TemporaryDirectory() as scratch:
        credentials = Path(scratch) / "credentials.json"
        credentials.write_text(json.dumps([credential for _, credential in enroll(args.agents)]))
        servers: list[tuple[str, Path]] = []
        if args.against:
            servers.append((args.against, _checkout(args.against, Path(scratch))))
        servers.append(("this checkout", ROOT))
        for label, root in servers:
            styles = (args.against_styles if root != ROOT else args.styles).split(",")
            for style in styles:
                Host.objects.update(status="offline", connection_id="", last_seen_at=None)
                results.append(measure_server(label, root, env, credentials, args, style))
                print(results[-1].line(), flush=True)
    return results


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.agents_idle", description=__doc__)
    parser.add_argument("--agents", type=int, default=1000, help="simulated idle agents")
    parser.add_argument("--seconds", type=float, default=20, help="the measured window")
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        help="seconds between heartbeats (default: the server's)",
    )
    parser.add_argument(
        "--warm", type=int, default=20, help="agents connected before the first RSS"
    )
    parser.add_argument(
        "--styles",
        default="old,pings,new",
        help="the agents' heartbeats and pings, in turn: old, pings, new",
    )
    parser.add_argument("--profile", default=None, help="py-spy daphne in the window: PREFIX")
    parser.add_argument(
        "--tracemalloc", type=int, default=0, help="where the memory goes: N frames"
    )
    parser.add_argument(
        "--against", default=None, help="a git revision to measure first (baseline)"
    )
    parser.add_argument(
        "--against-styles",
        default="pings",
        help="the baseline's agents: old, pings, new",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--simulate"]:
        simulate_main(argv[1:])
        return 0
    args = arguments(argv)
    django_setup()
    with scratch_database("bench_agents_idle") as database:
        results = measure(args, database)
    return 1 if any(result.problems or result.stale_hosts for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
