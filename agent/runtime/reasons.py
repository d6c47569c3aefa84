"""The wording of status reasons, shared by the runtimes: renters read these."""

from __future__ import annotations

import signal

from agent.runtime.types import Handle, Outcome


def log_tail(output: bytes, lines: int = 3, chars: int = 600) -> str:
    """The last non-empty lines of some output, for a status reason."""
    text = output.decode("utf-8", errors="replace").replace("\r", "\n")
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept)[-chars:] or "no output"


def exit_reason(exit_code: int) -> str:
    """``exit code N``, naming the signal where the code says one killed the script
    (128 + N from the init process; negative N from a Python subprocess)."""
    number = exit_code - 128 if exit_code > 128 else -exit_code
    reason = f"exit code {exit_code}"
    try:
        return f"{reason} (killed by {signal.Signals(number).name})" if number > 0 else reason
    except ValueError:
        return reason


def attempt_outcome(
    handle: Handle, exit_code: int, *, timed_out: bool = False, oom: bool = False
) -> Outcome:
    """How an attempt that exited with ``exit_code`` ended, for every runtime: a stop the agent
    asked for (cancel, the local cap) first, then the timeout, the memory limit, the exit code."""
    if handle.stop_status is not None:
        return Outcome(handle.stop_status, handle.stop_reason, exit_code)
    if timed_out:
        return Outcome("timed_out", f"timed out after {handle.timeout_seconds} seconds", exit_code)
    if oom:
        return Outcome("failed", f"out of memory (limit {handle.memory_mb} MB)", exit_code)
    if exit_code == 0:
        return Outcome("succeeded", "exit code 0", 0)
    return Outcome("failed", exit_reason(exit_code), exit_code)
