"""Helpers shared by the benchmarks that start servers: a free port, daphne, waiting, and
scripts/cluster.py (daphne as the cluster runs it, HAProxy in front)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
DAPHNE = [sys.executable, "-m", "daphne"]


def script_module(name: str) -> ModuleType:
    """scripts/NAME.py as a module named NAME (loaded once per process)."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def cluster_script() -> ModuleType:
    """scripts/cluster.py as a module: its Cluster, server_env, web_start, web_wait,
    front_start and children_stop start daphne and HAProxy exactly as ``make cluster`` does."""
    return script_module("cluster")


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
