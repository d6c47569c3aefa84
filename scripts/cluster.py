"""``make cluster``: the production layout on this machine, behind a real load balancer.

HAProxy (deploy/haproxy.cfg) in front of N daphne processes, M Celery workers and one Celery
beat, all on PostgreSQL (``DATABASE_URL``) and Redis (``REDIS_URL``: channel layer, broker,
cache) — the processes docs/operations.md runs on several machines, here on one. It:

1. refuses to start without a PostgreSQL ``DATABASE_URL``, a ``REDIS_URL`` and ``haproxy``;
2. migrates the database (``--skip-migrate`` when it is migrated already);
3. starts the daphne processes on free loopback ports, the workers and beat, waits until each
   daphne answers ``/healthz``, then starts HAProxy on ``--port`` (``CLUSTER_PORT``; 0 picks a
   free one) and waits until it sees every daphne up;
4. prints the URL, writes what it started to ``--state-file`` (JSON: the URL, HAProxy's
   runtime socket, each process's pid and port) and, on Ctrl-C or SIGTERM, stops HAProxy, beat,
   the workers, then the web processes (SIGTERM, SIGKILL after a grace period).

    DATABASE_URL=postgres://… REDIS_URL=redis://… python scripts/cluster.py \\
        [--port 8080] [--web 2] [--workers 2] [--var-dir var/cluster] [--skip-migrate]

A child that dies is reported and left dead, as on a machine whose process crashed: HAProxy
takes a dead daphne out of the rotation and its agents reconnect to another. Drain one with
``python scripts/cluster.py --state-file … drain web1`` (HAProxy sends it no new connection;
``ready web1`` undoes it). The processes run the production settings (``config.settings``,
``DEBUG`` off) with what a loopback deployment needs: plain-HTTP cookies, ``NUM_PROXIES=1``,
``ALLOWED_HOSTS`` of loopback; any of them set in the calling shell wins.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/supervision.py, run or loaded

import supervision  # noqa: E402
from supervision import (  # noqa: E402
    log_tail,
    secret_key,
    spawn,
    stop_all,
    stop_on_signal,
)

MANAGE = ROOT / "manage.py"
TEMPLATE = ROOT / "deploy" / "haproxy.cfg"
STARTUP_SECONDS = 120
BACKEND = "daphne"
# HAProxy's connections at once (agents and browsers hold one websocket each), at most.
MAXCONN = 20_000


class ClusterFailed(Exception):
    """A step failed or a requirement is missing; the message says which."""


@dataclass
class Child:
    name: str
    role: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    reported: bool = False


@dataclass
class Cluster:
    bind: str
    port: int
    web: int
    workers: int
    worker_concurrency: int
    var_dir: Path
    state_file: Path
    haproxy: str
    children: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "::") else self.bind  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def logs(self) -> Path:
        return self.var_dir / "logs"

    @property
    def admin_socket(self) -> Path:
        return self.var_dir / "haproxy.sock"


# --- Requirements and the environment -----------------------------------------------------------


def requirements_check(environ: Mapping[str, str], haproxy: str) -> None:
    """PostgreSQL, Redis and HAProxy, or a clear refusal."""
    problems = []
    database = environ.get("DATABASE_URL", "")
    if not database.startswith(("postgres://", "postgresql://")):
        problems.append(
            "DATABASE_URL must name a PostgreSQL database (postgres://user@host:5432/name); "
            + ("it is not set" if not database else "SQLite runs one process only: make demo")
        )
    redis_url = environ.get("REDIS_URL", "")
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append(
            "REDIS_URL must name a Redis database (redis://127.0.0.1:6379/0): it carries the "
            "channel layer between the processes, the Celery broker and the cache"
        )
    if shutil.which(haproxy) is None:
        problems.append(f"HAProxy ({haproxy}) is not installed: apt-get install haproxy")
    if problems:
        raise ClusterFailed("cannot start the cluster:\n  - " + "\n  - ".join(problems))


def server_env(cluster: Cluster, base: Mapping[str, str]) -> dict[str, str]:
    """The production settings, with a loopback deployment's defaults under the caller's."""
    defaults = {
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PUBLIC_URL": cluster.url,
        "NUM_PROXIES": "1",
        # Plain HTTP on loopback: cookies marked Secure would never come back.
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_HSTS_SECONDS": "0",
        "MEDIA_ROOT": str(cluster.var_dir / "media"),
        "COMMUNIPUTE_VAR_DIR": str(cluster.var_dir),
        # A machine of one's own: the demo's payment provider, unless PAYMENT_PROVIDER and
        # DEMO_PAYMENTS_ENABLED=0 say otherwise (docs/payments.md).
        "DEMO_PAYMENTS_ENABLED": "1",
    }
    env = {**defaults, **base}
    env.setdefault("SECRET_KEY", secret_key(cluster.var_dir))
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")])),
    )
    return env


def free_port(bind: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((bind, 0))
        return int(probe.getsockname()[1])


def haproxy_config(cluster: Cluster, servers: Mapping[str, int], health_host: str) -> str:
    """deploy/haproxy.cfg filled in for these daphne processes."""
    lines = "\n".join(f"    server {name} 127.0.0.1:{port}" for name, port in servers.items())
    # Each connection holds two descriptors (client and server side); HAProxy refuses to start
    # when it cannot raise its limit to what maxconn needs.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = MAXCONN if hard == resource.RLIM_INFINITY else min(MAXCONN, (hard - 200) // 2)
    return string.Template(TEMPLATE.read_text()).substitute(
        bind=f"{cluster.bind}:{cluster.port}",
        admin_socket=str(cluster.admin_socket),
        health_host=health_host,
        maxconn=str(limit),
        servers=lines,
    )


# --- HAProxy's runtime API -----------------------------------------------------------------------


def haproxy_admin(socket_path: Path | str, command: str, timeout: float = 5) -> str:
    """One command on HAProxy's runtime socket (``show stat``, ``set server … state drain``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(str(socket_path))
        connection.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def servers_state(socket_path: Path | str) -> dict[str, dict[str, str]]:
    """The backend's servers from ``show stat``: name → its CSV row (status, scur, …)."""
    rows = haproxy_admin(socket_path, "show stat").lstrip("# ").splitlines()
    if not rows:
        return {}
    header = rows[0].split(",")
    servers = {}
    for row in rows[1:]:
        values = dict(zip(header, row.split(","), strict=False))
        if values.get("pxname") == BACKEND and values.get("svname") not in ("BACKEND", None):
            servers[values["svname"]] = values
    return servers


def server_set_state(socket_path: Path | str, name: str, state: str) -> None:
    """``ready``, ``drain`` (no new connections, open ones stay) or ``maint``."""
    if state not in ("ready", "drain", "maint"):
        raise ClusterFailed(f"unknown server state {state!r}: ready, drain or maint")
    answer = haproxy_admin(socket_path, f"set server {BACKEND}/{name} state {state}").strip()
    if answer:
        raise ClusterFailed(f"HAProxy refused: {answer}")


# --- Children ------------------------------------------------------------------------------------


def child_start(
    cluster: Cluster,
    name: str,
    role: str,
    command: Sequence[str],
    env: Mapping[str, str],
    port: int | None = None,
) -> Child:
    log = cluster.logs / f"{name}.log"
    process = spawn(command, env, log)
    child = Child(name=name, role=role, process=process, log=log, port=port)
    cluster.children.append(child)
    return child


def children_stop(cluster: Cluster) -> None:
    """Stop the children in reverse start order (HAProxy, beat, workers, web)."""
    stop_all(cluster.children)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait(cluster: Cluster, what: str, ready: Any, watched: Sequence[Child]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and not cluster.stopping.is_set():
        for child in watched:
            if child.process.poll() is not None:
                raise ClusterFailed(
                    f"{child.name} exited with {child.process.returncode}:\n{log_tail(child.log)}"
                )
        if ready():
            return
        time.sleep(0.2)
    if not cluster.stopping.is_set():
        raise ClusterFailed(f"{what} not ready in {STARTUP_SECONDS} s")


def step_run(cluster: Cluster, title: str, command: Sequence[str], env: Mapping[str, str]) -> None:
    supervision.step_run(cluster.logs, title, command, env, ClusterFailed)


def services_start(cluster: Cluster, env: Mapping[str, str]) -> None:
    web = web_start(cluster, env)
    python = sys.executable
    for number in range(1, cluster.workers + 1):
        child_start(
            cluster,
            f"worker{number}",
            "worker",
            [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
             "--hostname", f"worker{number}@%h", "--concurrency", str(cluster.worker_concurrency)],
            env,
        )  # fmt: skip
    child_start(
        cluster,
        "beat",
        "beat",
        [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
         "--schedule", str(cluster.var_dir / "celerybeat-schedule")],
        env,
    )  # fmt: skip
    web_wait(cluster, web)
    front_start(cluster, env, web)


def web_start(cluster: Cluster, env: Mapping[str, str]) -> list[Child]:
    """The ``cluster.web`` daphne processes on free loopback ports (not waited for: web_wait)."""
    web = []
    for number in range(1, cluster.web + 1):
        port = free_port()
        web.append(
            child_start(
                cluster,
                f"web{number}",
                "web",
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                 "--ping-interval", "20", "--ping-timeout", "20", "config.asgi:application"],
                env,
                port=port,
            )
        )  # fmt: skip
    return web


def web_wait(cluster: Cluster, web: Sequence[Child]) -> None:
    """Until each daphne answers ``/healthz`` (any child's exit fails it)."""
    for child in web:
        _wait(
            cluster,
            child.name,
            lambda child=child: _healthy(f"http://127.0.0.1:{child.port}/healthz"),
            cluster.children,
        )


def front_start(cluster: Cluster, env: Mapping[str, str], web: Sequence[Child]) -> Child:
    """HAProxy on ``cluster.url`` in front of ``web``, once it sees every one of them up."""
    health_host = env["ALLOWED_HOSTS"].split(",")[0].strip() or "127.0.0.1"
    config = cluster.var_dir / "haproxy.cfg"
    config.write_text(haproxy_config(cluster, {c.name: c.port for c in web if c.port}, health_host))
    step_run(cluster, "checking the HAProxy configuration", [cluster.haproxy, "-c", "-f",
             str(config)], env)  # fmt: skip
    cluster.admin_socket.unlink(missing_ok=True)
    # -W: master-worker (SIGUSR2 reloads, SIGUSR1 soft-stops); -db: stay in the foreground.
    haproxy = child_start(
        cluster, "haproxy", "haproxy", [cluster.haproxy, "-W", "-db", "-f", str(config)], env
    )

    def all_up() -> bool:
        if not cluster.admin_socket.exists():
            return False
        try:
            servers = servers_state(cluster.admin_socket)
        except OSError:
            return False
        return len(servers) == len(web) and all(s["status"] == "UP" for s in servers.values())

    _wait(cluster, "HAProxy", all_up, cluster.children)
    _wait(cluster, "HAProxy", lambda: _healthy(f"{cluster.url}/healthz"), [haproxy])
    return haproxy


def state_write(cluster: Cluster) -> None:
    state = {
        "url": cluster.url,
        "admin_socket": str(cluster.admin_socket),
        "backend": BACKEND,
        "logs": str(cluster.logs),
        "processes": [
            {"name": c.name, "role": c.role, "pid": c.process.pid, "port": c.port}
            for c in cluster.children
        ],
    }
    tmp = cluster.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(cluster.state_file)


def banner(cluster: Cluster) -> str:
    rule = "=" * 78
    web = ", ".join(f"{c.name} :{c.port}" for c in cluster.children if c.role == "web")
    return "\n".join(
        [
            rule,
            f"CommuniPute cluster at {cluster.url}/",
            f"  HAProxy -> daphne {web}",
            f"  Celery workers: {cluster.workers} (concurrency {cluster.worker_concurrency});"
            " beat: 1",
            f"  HAProxy runtime socket: {cluster.admin_socket}",
            f"  state: {cluster.state_file}    logs: {cluster.logs}/",
            "Stop with Ctrl-C.",
            rule,
        ]
    )


def supervise(cluster: Cluster) -> int:
    """Until Ctrl-C/SIGTERM: report a child that exits and leave it (HAProxy routes around a dead
    daphne); only HAProxy's own exit stops the cluster, since nothing reaches the rest then."""
    while not cluster.stopping.wait(0.5):
        for child in cluster.children:
            if child.process.poll() is None or child.reported:
                continue
            child.reported = True
            print(
                f"{child.name} (pid {child.process.pid}) exited with {child.process.returncode}",
                file=sys.stderr,
                flush=True,
            )
            if child.role == "haproxy":
                print(f"HAProxy's log ends:\n{log_tail(child.log)}", file=sys.stderr)
                return 1
    return 0


def cluster_run(cluster: Cluster, skip_migrate: bool) -> int:
    stop_on_signal(cluster.stopping)
    status = 1
    try:
        requirements_check(os.environ, cluster.haproxy)
        cluster.var_dir.mkdir(parents=True, exist_ok=True)
        if cluster.port == 0:
            cluster.port = free_port(cluster.bind)
        env = server_env(cluster, os.environ)
        print(f"Starting the cluster in {cluster.var_dir}", flush=True)
        if not skip_migrate:
            step_run(
                cluster, "migrating the database", [sys.executable, str(MANAGE), "migrate",
                "--noinput"], env
            )  # fmt: skip
        print(
            f"  starting {cluster.web} daphne, {cluster.workers} Celery workers, beat, HAProxy",
            flush=True,
        )
        services_start(cluster, env)
        if not cluster.stopping.is_set():
            state_write(cluster)
            print(banner(cluster), flush=True)
            status = supervise(cluster)
    except ClusterFailed as exc:
        print(f"\ncluster: {exc}", file=sys.stderr, flush=True)
    finally:
        if cluster.children:
            print("stopping: " + ", ".join(c.name for c in reversed(cluster.children)), flush=True)
        children_stop(cluster)
        cluster.state_file.unlink(missing_ok=True)
    if cluster.stopping.is_set() and status == 0:
        print("stopped.", flush=True)
    return status


def _state_read(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ClusterFailed(f"no running cluster at {path}: {exc}") from None
    return state


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default="127.0.0.1", help="HAProxy's address")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("CLUSTER_PORT", "8080")),
        help="HAProxy's port (CLUSTER_PORT, default 8080; 0 picks a free one)",
    )
    parser.add_argument("--web", type=int, default=2, help="daphne processes (2)")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (2)")
    parser.add_argument(
        "--worker-concurrency", type=int, default=1, help="processes per worker (1)"
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=ROOT / "var" / "cluster",
        help="logs, HAProxy's config and socket, beat's schedule, media (var/cluster)",
    )
    parser.add_argument("--state-file", type=Path, help="(default: <var-dir>/cluster.json)")
    parser.add_argument("--skip-migrate", action="store_true")
    parser.add_argument("--haproxy", default="haproxy", help="the haproxy binary")
    parser.add_argument(
        "action",
        nargs="*",
        default=[],
        help="nothing: run the cluster; `drain NAME`, `ready NAME`: change a running "
        "cluster's web process in HAProxy; `status`: its servers",
    )
    args = parser.parse_args(argv)
    var_dir = args.var_dir.resolve()
    state_file = (args.state_file or var_dir / "cluster.json").resolve()
    try:
        if args.action:
            state = _state_read(state_file)
            if args.action == ["status"]:
                for name, row in servers_state(state["admin_socket"]).items():
                    print(f"{name}: {row['status']}, {row['scur']} connections now")
                return 0
            if len(args.action) == 2 and args.action[0] in ("drain", "ready"):
                server_set_state(state["admin_socket"], args.action[1], args.action[0])
                return 0
            parser.error(f"unknown action {' '.join(args.action)!r}")
        if args.web < 1 or args.workers < 1 or args.worker_concurrency < 1:
            parser.error("--web, --workers and --worker-concurrency must be at least 1")
    except ClusterFailed as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 2
    cluster = Cluster(
        bind=args.bind,
        port=args.port,
        web=args.web,
        workers=args.workers,
        worker_concurrency=args.worker_concurrency,
        var_dir=var_dir,
        state_file=state_file,
        haproxy=args.haproxy,
    )
    return cluster_run(cluster, args.skip_migrate)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
