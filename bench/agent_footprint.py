"""The idle agent's footprint: CPU (% of one core) and memory while connected to a server.

    python -m bench.agent_footprint [--seconds 30] [--heartbeat 10]

Starts daphne on a free loopback port (DATABASE_URL, REDIS_URL as configured), enrolls a real
``communipute-agent`` into a temporary config, runs it idle (no jobs: offers would be
rejected) and samples its process with psutil after it connected. Removes the host, the
token and the user it created afterwards. Targets: < 1 % of one core and < 60 MB RSS.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")

import django

django.setup()

import psutil  # noqa: E402
from django.core.management import call_command  # noqa: E402

from accounts.models import User  # noqa: E402
from agent.control import state_read  # noqa: E402
from bench._processes import ROOT, daphne_start, free_port, wait_until  # noqa: E402
from hosts.models import EnrollmentToken, Host  # noqa: E402
from hosts.services import enrollment_create  # noqa: E402

MIB = 1024 * 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--heartbeat", type=int, default=10, help="HOST_HEARTBEAT_SECONDS")
    args = parser.parse_args(argv)
    call_command("migrate", verbosity=0)
    suffix = secrets.token_hex(4)
    owner = User.objects.create(
        username=f"footprint-{suffix}", email=f"footprint-{suffix}@example.com"
    )
    try:
        with tempfile.TemporaryDirectory() as directory:
            _measure(owner, Path(directory), args)
    finally:
        EnrollmentToken.objects.filter(owner=owner).delete()
        Host.objects.filter(owner=owner).delete()
        owner.delete()


def _measure(owner: User, directory: Path, args: argparse.Namespace) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HOST_HEARTBEAT_SECONDS": str(args.heartbeat),
        "PYTHONPATH": str(ROOT),
        "COMMUNIPUTE_AGENT_CONFIG": str(directory / "agent.json"),
        "COMMUNIPUTE_WORK_DIR": str(directory / "work"),
    }
    daphne = daphne_start(port, env, directory / "daphne.log")
    try:
        token = enrollment_create(owner=owner).token
        server = f"http://127.0.0.1:{port}"
        subprocess.run(
            [sys.executable, "-m", "agent.cli", "enroll", "--server", server, "--token", token],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            state_path = directory / "agent.state.json"
            wait_until(
                lambda: (state_read(state_path) or {}).get("connected"),
                "the agent to connect",
                timeout=30,
                interval=0.2,
            )
            _sample(psutil.Process(agent.pid), args)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
    finally:
        daphne.terminate()
        daphne.wait(30)


def _sample(process: psutil.Process, args: argparse.Namespace) -> None:
    time.sleep(3)  # past start-up (imports, specs, first availability check)
    cpu_before, started = _cpu_seconds(process), time.monotonic()
    peak_rss = 0
    while time.monotonic() - started < args.seconds:
        peak_rss = max(peak_rss, process.memory_info().rss)
        time.sleep(1)
    elapsed = time.monotonic() - started
    cpu_percent = 100 * (_cpu_seconds(process) - cpu_before) / elapsed
    memory = process.memory_full_info()
    print(
        f"idle agent over {elapsed:.0f} s (heartbeat every {args.heartbeat} s), "
        f"Python {sys.version.split()[0]} on {sys.platform}:"
    )
    print(f"  CPU: {cpu_percent:.2f} % of one core")
    rss, peak, uss = memory.rss / MIB, peak_rss / MIB, memory.uss / MIB
    print(f"  RSS: {rss:.1f} MB (peak {peak:.1f} MB), USS {uss:.1f} MB")


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


if __name__ == "__main__":
    main()
