"""The wording of status reasons, shared by the runtimes: renters read these."""

from __future__ import annotations

import signal

from agent.runtime.types import Handle, Outcome

# What a renter reads when the host failed them (agent/runtime/types.py host_fault); the
# engine's own words go to the host owner as the detail.
HOST_PREPARE_REASON = "the host could not prepare the job"
HOST_START_REASON = "the host could not start the job's container"
HOST_LOST_REASON = "the host lost track of the job's container"
HOST_INDEX_REASON = "the host could not reach its package index"
HOST_DISK_REASON = "the host ran out of disk space"
HOST_CERT_REASON = "the host's package index certificate is missing"
HOST_AGENT_REASON = "the host agent failed"
HOST_QUOTA_REASON = "the host could not limit the job's disk"
# The sandbox paths of the quota'd directories (agent/runtime/quota.py QUOTA_DIRS).
_SANDBOX_PATHS = {"work": "/work", "outputs": "/outputs"}

# pip's words for trouble on the host's side. Each has a space, which no requirement can
# (they are plain specifiers): a renter can't name a package that passes for a host fault.
_INDEX_TROUBLE = (
    "failed to establish a new connection",
    "temporary failure in name resolution",
    "name or service not known",
    "network is unreachable",
    "connection broken by",
    "max retries exceeded",
    "could not fetch url",
    "read timed out",
    "connection refused",
    "http error 5",
    "certificate verify failed",
)
_DISK_TROUBLE = ("no space left on device", "disk quota exceeded")


def install_host_problem(output: bytes) -> str | None:
    """The host's fault in a failed install's output (its package index unreachable, its disk
    full), or None: the renter's (a requirement that doesn't exist, a version conflict)."""
    text = output.decode("utf-8", errors="replace").lower()
    if any(marker in text for marker in _DISK_TROUBLE):
        return HOST_DISK_REASON
    if any(marker in text for marker in _INDEX_TROUBLE):
        return HOST_INDEX_REASON
    return None


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


def disk_full_outcome(directory: str, limit_mb: int, exit_code: int | None) -> Outcome:
    """A failed run that left its /work or /outputs full: the renter's (its own limit)."""
    path = _SANDBOX_PATHS.get(directory, directory)
    return Outcome(
        "failed", f"the job ran out of space in {path} (its {limit_mb} MB limit)", exit_code
    )
