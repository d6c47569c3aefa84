"""What the local launchers (scripts/run_demo.py, scripts/cluster.py) share: their child
processes (started in a group of their own, logged to a file, stopped group and all, SIGTERMed
if the launcher dies), their setup steps, and the per-machine SECRET_KEY. Standard library
only: it runs before the project's environment is known to work."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Protocol

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 15
PR_SET_PDEATHSIG = 1


class Supervised(Protocol):
    name: str
    process: subprocess.Popen[bytes]


def secret_key(var_dir: Path) -> str:
    """A per-machine SECRET_KEY kept in the var folder (0600): the same for every process
    started from it, as sessions and CSRF tokens need, and known to nobody else."""
    path = var_dir / "secret-key"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the supervisor dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def spawn(command: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in the repository, in a process group of its own, output to ``log``."""
    with open_log(log) as output:
        return subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def step_run(
    logs: Path,
    title: str,
    command: Sequence[str],
    env: Mapping[str, str],
    failed: type[Exception],
) -> str:
    """Run a setup step to completion; its output goes to logs/setup.log and is returned; a
    failure raises ``failed`` with the output's tail."""
    print(f"  {title} ...", flush=True)
    result = subprocess.run(
        list(command), cwd=ROOT, env=dict(env), capture_output=True, text=True, check=False
    )
    with open_log(logs / "setup.log") as log:
        log.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n".encode())
    if result.returncode != 0:
        raise failed(f"{title} failed:\n{tail(result.stdout + result.stderr)}")
    return result.stdout


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def log_tail(path: Path) -> str:
    try:
        return tail(path.read_text(errors="replace"))
    except OSError:
        return "(no log)"


def stop_all(children: Sequence[Supervised]) -> None:
    """SIGTERM each child's process group in reverse start order; SIGKILL what still runs after
    the grace period, and whatever the child left in its group (a job's process, a pool
    thread's helper)."""
    for child in reversed(children):
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(STOP_GRACE_SECONDS)
        if child.process.poll() is None:
            print(f"  {child.name} did not stop in {STOP_GRACE_SECONDS} s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)


def stop_on_signal(stopping: threading.Event) -> None:
    """Ctrl-C and SIGTERM set ``stopping``; the launcher's loop then stops its children."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
