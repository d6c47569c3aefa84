"""The run container's own CPU meter: what the container leaves behind for a restarted agent.

The engine deletes a container's cgroup when it exits and keeps no stats of an exited
container, so an agent that was down while the job ended has nothing to read its CPU time
from. The run step therefore starts the renter's script under a small wrapper (``WRAPPER``,
run with ``python3 -c``): it forwards the signals the init process passes on, waits for the
script and, once it has exited, writes the CPU time of the whole process tree it reaped
(``getrusage`` of the children and of itself: user + system seconds) to ``usage.json`` in the
meter directory — ``<attempt dir>/meter`` on the host, bind-mounted at ``METER_MOUNT``.

That file is written inside the sandbox, where the renter's code runs as the same user, so it
is **renter input**: ``meter_read`` opens it without following a link, refuses anything but a
regular file of at most ``METER_MAX_BYTES`` holding ``{"cpu_seconds": <finite number>}`` within
the protocol's bounds, and the caller clips what it says to the cores the container was given
times the time it ran (docs/sandbox.md, "The CPU meter").
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from agent.protocol import MAX_SECONDS

METER_DIR = "meter"
METER_MOUNT = "/meter"
METER_FILE = "usage.json"
METER_MAX_BYTES = 4096

# Runs as the container's main process under its init (tini), as the sandbox user; argv:
# <meter file> <command...>. Signals that tini forwards are passed on to the script (blocked
# across the fork, so none is lost or run by the wrong process); the script gets the default
# dispositions a fresh process has. As a child subreaper it also reaps the script's orphans, so
# their CPU time counts. It exits as the script did: its code, or 128 + the signal that killed
# it, as the init process reports either. Writing the file is best effort (the renter owns the
# directory as much as the wrapper does).
WRAPPER = """\
import os, resource, signal, sys
meter, command = sys.argv[1], sys.argv[2:]
passed = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
          signal.SIGUSR1, signal.SIGUSR2)
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
except Exception:
    pass
signal.pthread_sigmask(signal.SIG_BLOCK, passed)
child = os.fork()
if child == 0:
    for number in (*passed, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, passed)
    try:
        os.execvp(command[0], command)
    except OSError as error:
        print(f"cannot run {command[0]}: {error}", file=sys.stderr)
        os._exit(127)
def forward(number, frame):
    try:
        os.kill(child, number)
    except OSError:
        pass
for number in passed:
    signal.signal(number, forward)
signal.pthread_sigmask(signal.SIG_UNBLOCK, passed)
status = os.waitpid(child, 0)[1]
while True:
    try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
            break
    except ChildProcessError:
        break
used = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
seconds = sum(usage.ru_utime + usage.ru_stime for usage in used)
try:
    partial = os.path.join(os.path.dirname(meter), f".usage.{os.getpid()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    descriptor = os.open(partial, flags, 0o644)
    os.write(descriptor, ('{"cpu_seconds": %.6f}' % seconds).encode())
    os.close(descriptor)
    os.replace(partial, meter)
except OSError:
    pass
os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
"""


def wrapped(command: list[str]) -> list[str]:
    """The run container's command: ``command`` under the meter wrapper."""
    return ["python3", "-c", WRAPPER, f"{METER_MOUNT}/{METER_FILE}", *command]


def meter_read(meter_dir: Path) -> float | None:
    """The CPU seconds the wrapper wrote in ``meter_dir``, or None: no file, or one that is not
    exactly what the wrapper writes (a link, not a regular file, over ``METER_MAX_BYTES``,
    not JSON, another shape, a number that is not finite or out of the protocol's bounds).
    Renter input: the caller clips it (``meter_clip``)."""
    try:
        directory = os.open(meter_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        descriptor = os.open(
            METER_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory
        )
    except OSError:
        return None
    finally:
        os.close(directory)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_size > METER_MAX_BYTES:
            return None
        raw = os.read(descriptor, METER_MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(descriptor)
    if len(raw) > METER_MAX_BYTES:
        return None
    try:
        data = json.loads(raw, parse_constant=_refuse)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or set(data) != {"cpu_seconds"}:
        return None
    value = data["cpu_seconds"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        return None
    return seconds


def meter_clip(seconds: float, cores: float, run_seconds: float) -> float:
    """At most the CPU time the container could have used: its cores x the time it ran."""
    return max(0.0, min(seconds, max(cores, 0.0) * max(run_seconds, 0.0)))


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not a number the meter writes")
