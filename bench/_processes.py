"""Helpers shared by the benchmarks that start servers: a free port, daphne, waiting."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAPHNE = [sys.executable, "-m", "daphne"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    condition: Callable[[], object], what: str, timeout: float = 60, interval: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def daphne_start(port: int, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """daphne serving config.asgi on 127.0.0.1:``port``, once it listens (output to ``log``)."""
    with log.open("wb") as output:
        daphne = subprocess.Popen(
            [*DAPHNE, "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: _listening(port, daphne), "daphne")
    except BaseException:
        daphne.kill()
        daphne.wait(30)
        raise
    return daphne


def _listening(port: int, daphne: subprocess.Popen[bytes]) -> bool:
    if daphne.poll() is not None:
        raise SystemExit("daphne exited")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True
