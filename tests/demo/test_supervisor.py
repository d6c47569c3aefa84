"""``make demo`` end to end: the supervisor (scripts/run_demo.py) in a subprocess on a free port
with its own var directory brings up daphne, Celery and a local agent, the seeded renter logs
in and finds the demo host online, and SIGTERM stops every child."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 180
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _eventually(check: Callable[[], T | None], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result is not None:
            return result
        time.sleep(0.25)
    raise AssertionError(f"{what} within {seconds} s")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port, var_dir = _free_port(), tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    output = (tmp_path / "demo.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "scripts/run_demo.py", "--port", str(port), "--var-dir", str(var_dir)],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process, f"http://127.0.0.1:{port}", var_dir
    finally:
        if process.poll() is None:
            process.kill()  # the children die with it (PR_SET_PDEATHSIG)
            process.wait()
        output.close()
        print((tmp_path / "demo.out").read_text(errors="replace"))
        for log in sorted((var_dir / "logs").glob("*.log")):  # a failure's evidence
            print(f"--- {log.name} (tail) ---\n{log.read_text(errors='replace')[-3000:]}")


def _answer(url: str) -> int | None:
    try:
        return requests.get(f"{url}/api/v1/auth/csrf/", timeout=5).status_code
    except requests.RequestException:
        return None


def _demo_hosts_online(url: str, token: str) -> list[dict[str, Any]] | None:
    response = requests.get(
        f"{url}/api/v1/hosts/",
        params={"online": "true"},
        headers={"Authorization": f"Token {token}"},
        timeout=5,
    )
    hosts = [host for host in response.json()["results"] if host["name"] == "demo host"]
    return hosts or None


def test_make_demo_runs_the_marketplace_and_stops_cleanly(
    demo: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    process, url, var_dir = demo

    # when: the supervisor has started everything
    _eventually(lambda: process.poll() or _answer(url), STARTUP_SECONDS, "the API answers")
    assert process.poll() is None
    renter = json.loads((var_dir / "demo-users.json").read_text())["renter"]
    login = requests.post(
        f"{url}/api/v1/auth/login/",
        json={"username": renter["username"], "password": renter["password"]},
        timeout=10,
    )

    # then: the renter is in, with the seeded credits, and the local agent's host is online
    assert login.status_code == 200
    token = login.json()["token"]
    wallet = requests.get(
        f"{url}/api/v1/wallet/", headers={"Authorization": f"Token {token}"}, timeout=10
    )
    assert wallet.json()["available_micros"] == 100_000_000
    hosts = _eventually(lambda: _demo_hosts_online(url, token), 60, "the demo host is online")
    assert [
        (host["status"], host["cpu_core_hour_micros"], host["memory_gb_hour_micros"])
        for host in hosts
    ] == [("online", 50_000, 10_000)]
    # and beat (its own process) publishes periodic tasks that the worker in the web process runs
    web_log = var_dir / "logs" / "web.log"
    _eventually(
        lambda: re.search(r"Task [\w.]+\[[-\w]+\] succeeded", web_log.read_text()) or None,
        60,
        "a periodic task ran in the web process",
    )
    children = psutil.Process(process.pid).children(recursive=True)
    names = sorted(" ".join(child.cmdline()[1:4]) for child in children)
    assert any("demo_web" in name for name in names), names
    assert any("celery -A" in name for name in names), names
    assert any("agent.cli run" in name for name in names), names

    # when: SIGTERM
    process.send_signal(signal.SIGTERM)

    # then: the supervisor and every child exit
    assert process.wait(60) == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert len(gone) == len(children)
