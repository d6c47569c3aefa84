"""``make demo``: the whole marketplace on this machine, on the embedded default.

SQLite, no Redis (an in-process channel layer), a Celery worker and beat on a SQLite broker,
demo payments, three demo users and a local host agent — nothing to install. This supervisor:

1. migrates the database (``var/demo.sqlite3``), collects static files if the web app is built,
   and seeds the demo users (``manage.py demo_seed``: random passwords kept in var/);
2. starts the web process (``manage.py demo_web``: daphne with the Celery worker inside it, see
   there why) and Celery beat, and waits until the server answers;
3. enrolls a local host through the real API (the host owner logs in, asks for an enrollment
   token, ``communipute-agent enroll``) unless the agent is enrolled already, and starts
   ``communipute-agent run`` — with Docker when it works, otherwise with the process runtime,
   which isolates nothing and says so. With Docker but no runner image (a first run), it offers
   to build one (``runner_image_offer``: asked on a terminal, ``DEMO_BUILD_RUNNER_IMAGE=1`` to
   build without asking, ``=0`` never); without Docker it says that jobs run unisolated;
   earnings mature after 2 minutes, not 7 days (``server_env``), so payouts can be tried;
4. prints the URL, the logins and where the logs go, and on Ctrl-C or SIGTERM stops everything:
   the agent, then beat, then the web process, each with SIGTERM, SIGKILL after a grace period.

    python scripts/run_demo.py [--port 8000] [--bind 127.0.0.1] [--var-dir var]

It runs the repository's code with this Python; every child runs in its own process group, so
Ctrl-C reaches only the supervisor, which stops the children in order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
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
STARTUP_SECONDS = 120
BANNER_WIDTH = 78
# The demo host's prices: 0.05 credits per CPU core-hour used, 0.01 per GB-hour of memory.
DEMO_RATES = {"cpu_core_hour_micros": 50_000, "memory_gb_hour_micros": 10_000}


class DemoFailed(Exception):
    """A step failed; the message says which and where its log is."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Demo:
    bind: str
    port: int
    var_dir: Path
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
    def agent_config(self) -> Path:
        return self.var_dir / "agent" / "agent.json"


# --- The environment ----------------------------------------------------------------------------


def server_env(demo: Demo, base: Mapping[str, str]) -> dict[str, str]:
    """The embedded default, whatever the calling shell has set for production."""
    env = {k: v for k, v in base.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        DEBUG="1",
        SECRET_KEY=secret_key(demo.var_dir),
        COMMUNIPUTE_VAR_DIR=str(demo.var_dir),
        DATABASE_URL=f"sqlite:///{demo.var_dir / 'demo.sqlite3'}",
        PAYMENT_PROVIDER="demo",
        DEMO_PAYMENTS_ENABLED="1",
        # The local agent may run jobs without isolation (no Docker): the demo renter may use
        # it, and every page that shows the host says so in red.
        PLACEMENT_ALLOW_UNISOLATED_HOSTS="1",
        PUBLIC_URL=demo.url,
        # Earnings become payable a dispute window after their job settled: 7 days by default,
        # 2 minutes in the demo (checked every 30 s), so a payout can be tried at once. The
        # demo's own variables, so a production shell's EARNINGS_* never shortens the demo's.
        EARNINGS_DISPUTE_WINDOW_SECONDS=base.get("DEMO_EARNINGS_DISPUTE_WINDOW_SECONDS", "120"),
        EARNINGS_MATURE_INTERVAL_SECONDS="30",
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


@dataclass(frozen=True)
class JobRuntime:
    env: dict[str, str]
    note: str
    isolates_nothing: bool = False


def _docker_image() -> str | None:
    """The runner image Docker has locally, or None when Docker does not answer."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
    except Exception:
        return None
    wanted = os.environ.get("COMMUNIPUTE_RUNNER_IMAGE")
    for image in [wanted] if wanted else ["communipute/runner:latest", "python:3.12-slim"]:
        with contextlib.suppress(Exception):
            client.images.get(image)
            return image
    return ""


RUNNER_IMAGE_BUILD = [str(ROOT / "scripts" / "build-runner-image.sh")]


def runner_image_offer(
    demo: Demo,
    environ: Mapping[str, str],
    *,
    ask: Callable[[str], str] | None,
    build: Callable[[Path], bool],
) -> str:
    """On a first run with Docker but no runner image: build it (asked on a terminal, or with
    ``DEMO_BUILD_RUNNER_IMAGE=1``), so that jobs run isolated. Never fails the demo: without
    Docker, or when the build is declined or fails, it says what happens instead (jobs run
    unisolated). Returns what it did: ``present``, ``no_docker``, ``built``, ``failed``,
    ``declined`` or ``not_asked``."""
    image = _docker_image()
    if image is None:
        print(
            "  Docker does not answer: jobs will run WITHOUT ISOLATION. With Docker installed, "
            "`make runner-image` builds the image that isolates them; then restart the demo."
        )
        return "no_docker"
    if image:
        return "present"
    wanted = environ.get("DEMO_BUILD_RUNNER_IMAGE", "").lower()
    if wanted in ("0", "no", "false"):
        answer = "n"
    elif wanted in ("1", "yes", "true"):
        answer = "y"
    elif ask is not None:
        answer = ask(
            "  Docker has no runner image, so jobs would run WITHOUT ISOLATION. Build it now "
            "(`make runner-image`: a few minutes, once)? [Y/n] "
        )
    else:
        print(
            "  Docker has no runner image: jobs will run WITHOUT ISOLATION. Build it with "
            "`make runner-image` (or `DEMO_BUILD_RUNNER_IMAGE=1 make demo`), then restart."
        )
        return "not_asked"
    if answer.strip().lower() not in ("", "y", "yes"):
        print("  Not building it: jobs run without isolation (`make runner-image` builds it).")
        return "declined"
    log = demo.logs / "runner-image.log"
    print(f"  building the runner image (log: {log}) ...", flush=True)
    if build(log):
        return "built"
    print(f"  The runner image build failed (see {log}): jobs run without isolation.")
    return "failed"


def runner_image_build(log: Path) -> bool:
    """Run scripts/build-runner-image.sh, its output to ``log``; True when it succeeded."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return (
            subprocess.run(RUNNER_IMAGE_BUILD, stdout=out, stderr=out, check=False).returncode == 0
        )


def job_runtime() -> JobRuntime:
    """Docker when the engine answers and has a runner image; else the process runtime, which
    isolates nothing (a local demo only); else, for an agent built without job managers, none."""
    from agent import job_manager_protocol as job_manager

    managers = getattr(job_manager, "JOB_MANAGERS", {})
    if "docker" not in managers:
        return JobRuntime({}, "this agent build runs no jobs yet (it has no job manager)")
    image = _docker_image()
    if image:
        env = {"COMMUNIPUTE_JOB_MANAGER": "docker", "COMMUNIPUTE_RUNNER_IMAGE": image}
        return JobRuntime(env, f"jobs run in Docker containers ({image})")
    why = (
        "Docker has no runner image (`make runner-image` builds one)"
        if image == ""
        else "Docker does not answer"
    )
    env = {"COMMUNIPUTE_JOB_MANAGER": "process", "COMMUNIPUTE_ALLOW_UNISOLATED": "1"}
    note = (
        f"{why}: jobs run as PLAIN PROCESSES OF YOUR USER, WITH NO ISOLATION AT ALL. "
        "Submit only code you trust."
    )
    return JobRuntime(env, note, isolates_nothing=True)


# --- Children -----------------------------------------------------------------------------------


def child_start(demo: Demo, name: str, command: Sequence[str], env: Mapping[str, str]) -> Child:
    log = demo.logs / f"{name}.log"
    process = spawn(command, env, log)
    child = Child(name=name, process=process, log=log)
    demo.children.append(child)
    return child


def step_run(demo: Demo, title: str, command: Sequence[str], env: Mapping[str, str]) -> str:
    """Run a setup step to completion; its output goes to logs/setup.log and is returned."""
    return supervision.step_run(demo.logs, title, command, env, DemoFailed)


def children_stop(demo: Demo) -> list[int | None]:
    """Stop the children (agent, beat, web: reverse start order); their exit codes."""
    stop_all(demo.children)
    return [child.process.returncode for child in demo.children]


# --- The API ------------------------------------------------------------------------------------


def _request(demo: Demo, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 (our own http URL)
        demo.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Accept": "application/json",
            "Content-Type": "application/json",
            **({"Authorization": f"Token {token}"} if token else {}),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.load(response)


def server_wait(demo: Demo, web: Child) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and not demo.stopping.is_set():
        if web.process.poll() is not None:
            raise DemoFailed(f"the web process exited:\n{log_tail(web.log)}")
        try:
            _request(demo, "GET", "/api/v1/auth/csrf/")
            return
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(0.25)
    raise DemoFailed(f"the server did not answer in {STARTUP_SECONDS} s:\n{log_tail(web.log)}")


def logins_read(var_dir: Path) -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads((var_dir / "demo-users.json").read_text())
    return data


def _enrolled_host_id(demo: Demo) -> int | None:
    from agent.config import ConfigError, config_load

    if not demo.agent_config.exists():
        return None
    try:
        config = config_load(demo.agent_config, env={})
    except ConfigError:
        return None
    return config.host_id if config.is_enrolled else None


def agent_enroll(demo: Demo, env: Mapping[str, str]) -> int:
    """Enroll the local host through the API, as the demo host owner would in the web app —
    unless the agent's config names a host that owner still has. Returns the host id."""
    owner = logins_read(demo.var_dir)["host"]
    token = _request(
        demo, "POST", "/api/v1/auth/login/",
        {"username": owner["username"], "password": owner["password"]},
    )["token"]  # fmt: skip
    hosts = _request(demo, "GET", "/api/v1/my/hosts/?page_size=500", token=token)["results"]
    host_id = _enrolled_host_id(demo)
    if host_id is not None and host_id in {host["id"] for host in hosts}:
        print(f"  the local agent is enrolled as host {host_id}")
        return host_id
    enrollment = _request(
        demo, "POST", "/api/v1/hosts/enrollments/", {"name": "demo host"}, token=token
    )
    step_run(
        demo,
        "enrolling the local agent",
        [
            sys.executable, "-m", "agent.cli", "enroll", "--config", str(demo.agent_config),
            "--server", demo.url, "--token", enrollment["token"], "--name", "demo host",
            "--force",
        ],
        env,
    )  # fmt: skip
    enrolled = _enrolled_host_id(demo)
    if enrolled is None:
        raise DemoFailed("the agent enrolled but its config names no host")
    # A new host lists no prices; the owner sets some, as they would on the host dashboard.
    _request(demo, "PATCH", f"/api/v1/my/hosts/{enrolled}/", DEMO_RATES, token=token)
    return enrolled


# --- The supervisor -----------------------------------------------------------------------------


def _port_check(bind: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError as exc:
            raise DemoFailed(
                f"cannot listen on {bind}:{port} ({exc.strerror}); "
                "stop what uses it or choose another port: make demo DEMO_PORT=8001"
            ) from None


def setup(demo: Demo, env: Mapping[str, str]) -> None:
    python = sys.executable
    step_run(demo, "migrating the database", [python, str(MANAGE), "migrate", "--noinput"], env)
    if (ROOT / "frontend" / "dist").is_dir():
        step_run(
            demo,
            "collecting static files (the web app)",
            [python, str(MANAGE), "collectstatic", "--noinput"],
            env,
        )
    print(step_run(demo, "seeding demo users", [python, str(MANAGE), "demo_seed"], env), end="")


def services_start(demo: Demo, env: Mapping[str, str]) -> Child:
    python = sys.executable
    web = child_start(
        demo,
        "web",
        [python, str(MANAGE), "demo_web", "--bind", demo.bind, "--port", str(demo.port)],
        env,
    )
    child_start(
        demo,
        "beat",
        [
            python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
            "--schedule", str(demo.var_dir / "celerybeat-schedule"),
        ],
        env,
    )  # fmt: skip
    return web


def agent_start(demo: Demo, env: Mapping[str, str], runtime: JobRuntime) -> None:
    agent_env = {
        **env,
        **runtime.env,
        "COMMUNIPUTE_WORK_DIR": str(demo.var_dir / "agent" / "work"),
        "COMMUNIPUTE_BACKOFF_MAX_SECONDS": "5",
    }
    child_start(
        demo,
        "agent",
        [
            sys.executable, "-m", "agent.cli", "run", "--config", str(demo.agent_config),
            "--server", demo.url,
        ],
        agent_env,
    )  # fmt: skip


def banner(demo: Demo, host_id: int, runtime: JobRuntime) -> str:
    logins = logins_read(demo.var_dir)
    rule = "=" * BANNER_WIDTH
    lines = [
        rule,
        f"CommuniPute is running at {demo.url}/",
        f"  API docs: {demo.url}/api/docs/    Django admin: {demo.url}/admin/",
        "",
        "Log in as:",
        *(
            f"  {role:<7} {login['username']:<12} password {login['password']}"
            for role, login in logins.items()
        ),
        f"  (kept in {demo.var_dir / 'demo-users.json'})",
        "",
        f"Local host agent: host {host_id} ('demo host', owned by {logins['host']['username']})",
        f"  {runtime.note}",
        f"Logs: {demo.logs}/ (web.log, beat.log, agent.log, setup.log)",
        "Stop with Ctrl-C.",
        rule,
    ]
    if runtime.isolates_nothing:
        lines[1:1] = ["", "WARNING: " + runtime.note.upper(), ""]
    return "\n".join(lines)


def supervise(demo: Demo) -> int:
    """Wait for Ctrl-C/SIGTERM, or for a child to exit (then stop the others): 0 or 1."""
    while not demo.stopping.wait(0.5):
        for child in demo.children:
            if child.process.poll() is not None:
                print(
                    f"\n{child.name} exited with {child.process.returncode}; stopping the demo. "
                    f"Its log ({child.log}) ends:\n{log_tail(child.log)}",
                    file=sys.stderr,
                )
                return 1
    return 0


def demo_run(demo: Demo) -> int:
    stop_on_signal(demo.stopping)
    demo.var_dir.mkdir(parents=True, exist_ok=True)
    ignored = [name for name in ("DATABASE_URL", "REDIS_URL") if os.environ.get(name)]
    if ignored:
        print(f"note: the demo ignores {' and '.join(ignored)}: it runs on SQLite, no Redis")
    env = server_env(demo, os.environ)
    status = 1
    try:
        _port_check(demo.bind, demo.port)
        print(f"Setting up the demo in {demo.var_dir}")
        setup(demo, env)
        print("  starting the web process (daphne + Celery worker) and Celery beat ...")
        web = services_start(demo, env)
        server_wait(demo, web)
        host_id = agent_enroll(demo, env)
        ask = input if sys.stdin.isatty() else None
        runner_image_offer(demo, os.environ, ask=ask, build=runner_image_build)
        runtime = job_runtime()
        agent_start(demo, env, runtime)
        print(banner(demo, host_id, runtime), flush=True)
        status = supervise(demo)
    except DemoFailed as exc:
        print(f"\nmake demo: {exc}", file=sys.stderr)
    finally:
        if demo.children:
            print("\nstopping: " + ", ".join(c.name for c in reversed(demo.children)), flush=True)
        children_stop(demo)
    if demo.stopping.is_set() and status == 0:
        print("stopped.")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=Path(os.environ.get("COMMUNIPUTE_VAR_DIR", ROOT / "var")),
        help="where the database, logs, passwords and the agent's files go (default var/)",
    )
    args = parser.parse_args(argv)
    demo = Demo(bind=args.bind, port=args.port, var_dir=args.var_dir.resolve())
    return demo_run(demo)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
