"""Files beside the config through which the CLI talks to a running agent.

``<config>.state.json``: the running agent's state, rewritten when it changes (``status``).
``<config>.drain``: written by ``communipute-agent drain``; holds ``drain`` (stop taking new
work) or ``exit`` (drain, then exit once no job runs). The agent looks at it every second and
removes it when it exits. Files instead of signals so it works the same on Windows.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import psutil

from agent.config import file_write_private

DrainMode = Literal["drain", "exit"]
DRAIN_MODES: tuple[DrainMode, ...] = ("drain", "exit")


def state_write(path: Path, state: dict[str, Any]) -> None:
    file_write_private(path, json.dumps(state, indent=2, sort_keys=True) + "\n")


def state_read(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def agent_is_running(state: dict[str, Any] | None) -> bool:
    if not state or not state.get("running") or not isinstance(state.get("pid"), int):
        return False
    pid: int = state["pid"]
    return pid == os.getpid() or psutil.pid_exists(pid)


def drain_request(path: Path, mode: DrainMode | None) -> None:
    """Ask the running agent to drain (or drain and exit); ``None`` withdraws the request."""
    if mode is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    file_write_private(path, mode + "\n")


def drain_requested(path: Path) -> DrainMode | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return "exit" if text == "exit" else "drain"
