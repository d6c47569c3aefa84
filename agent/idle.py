"""Is this machine available for new work right now, by its owner's policy?

The policy (``agent.protocol.AvailabilityPolicy``, set by the owner on the server) combines:

- weekly time windows in the host's time zone (none = any time);
- ``idle_minutes``: minutes without keyboard or mouse input, read where the OS offers it —
  X11 (``xprintidle`` or the XScreenSaver extension), GNOME on Wayland (Mutter's IdleMonitor),
  macOS (IOHIDSystem ``HIDIdleTime``), Windows (``GetLastInputInfo``). Where none answers (a
  headless server, a Wayland compositor without the interface) the agent falls back to CPU
  load: the machine counts as in use whenever other processes use more than
  ``FALLBACK_BUSY_PERCENT`` of it, and idle time is the time since that last happened;
- ``max_load``: a ceiling, in percent of all cores, on the CPU used by processes other than the
  agent (BOINC's "suspend when non-BOINC CPU usage is above"). While this agent's own jobs run
  the load is theirs too, so the ceiling is only applied between jobs.

Suspending a running job when the owner comes back is for later; for now running jobs finish
and only new work stops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psutil

from agent.protocol import AvailabilityPolicy, TimeWindow

logger = logging.getLogger(__name__)

FALLBACK_BUSY_PERCENT = 25.0

REASON_OUTSIDE_WINDOW = "outside_time_window"
REASON_USER_ACTIVE = "user_active"
REASON_CPU_BUSY = "cpu_busy"


@dataclass(frozen=True)
class Availability:
    is_available: bool
    reason: str = ""  # empty when available


AVAILABLE = Availability(True)


def availability_decide(
    policy: AvailabilityPolicy,
    *,
    now: datetime,
    idle_seconds: float | None,
    other_load_percent: float | None,
) -> Availability:
    """The verdict for one moment; ``None`` inputs mean "not known" and do not block."""
    if not window_contains(policy, now):
        return Availability(False, REASON_OUTSIDE_WINDOW)
    idle_minutes = policy.get("idle_minutes")
    if idle_minutes and idle_seconds is not None and idle_seconds < idle_minutes * 60:
        return Availability(False, REASON_USER_ACTIVE)
    max_load = policy.get("max_load")
    if max_load is not None and other_load_percent is not None and other_load_percent > max_load:
        return Availability(False, REASON_CPU_BUSY)
    return AVAILABLE


def window_contains(policy: AvailabilityPolicy, now: datetime) -> bool:
    windows = policy.get("windows") or []
    if not windows:
        return True
    local = now.astimezone(_zone(policy.get("timezone", "UTC")))
    return any(_in_window(window, local) for window in windows)


def _in_window(window: TimeWindow, local: datetime) -> bool:
    start, end = _parse(window["start"]), _parse(window["end"])
    minute = local.hour * 60 + local.minute
    days = window["days"]
    if start < end:  # same day
        return local.weekday() in days and start <= minute < end
    # Crosses midnight: the evening part on a listed day, the morning part on the day after.
    yesterday = (local - timedelta(days=1)).weekday()
    return (local.weekday() in days and minute >= start) or (yesterday in days and minute < end)


def _parse(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning("unknown time zone %r on this host; using UTC", name)
        return ZoneInfo("UTC")


# --- input idle time --------------------------------------------------------------------------


def input_idle_seconds() -> float | None:
    """Seconds since the last keyboard/mouse input, or None where the OS does not say."""
    if sys.platform == "win32":
        return _windows_idle()
    if sys.platform == "darwin":
        return _macos_idle()
    if os.environ.get("DISPLAY"):
        idle = _xprintidle() if shutil.which("xprintidle") else None
        return idle if idle is not None else _xscreensaver_idle()
    if os.environ.get("WAYLAND_DISPLAY") and shutil.which("gdbus"):
        return _mutter_idle()
    return None


def _run(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=3, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def _xprintidle() -> float | None:
    output = _run(["xprintidle"])
    return int(output.strip()) / 1000 if output and output.strip().isdigit() else None


class _XScreenSaverInfo(ctypes.Structure):
    _fields_ = [
        ("window", ctypes.c_ulong),
        ("state", ctypes.c_int),
        ("kind", ctypes.c_int),
        ("til_or_since", ctypes.c_ulong),
        ("idle", ctypes.c_ulong),
        ("event_mask", ctypes.c_ulong),
    ]


def _xscreensaver_idle() -> float | None:
    xlib_path, xss_path = ctypes.util.find_library("X11"), ctypes.util.find_library("Xss")
    if not xlib_path or not xss_path:
        return None
    xlib, xss = ctypes.cdll.LoadLibrary(xlib_path), ctypes.cdll.LoadLibrary(xss_path)
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    xlib.XDefaultRootWindow.restype = ctypes.c_ulong
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    xlib.XFree.argtypes = [ctypes.c_void_p]
    xss.XScreenSaverAllocInfo.restype = ctypes.POINTER(_XScreenSaverInfo)
    xss.XScreenSaverQueryInfo.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.POINTER(_XScreenSaverInfo),
    ]
    display = xlib.XOpenDisplay(None)
    if not display:
        return None
    try:
        info = xss.XScreenSaverAllocInfo()
        try:
            if not xss.XScreenSaverQueryInfo(display, xlib.XDefaultRootWindow(display), info):
                return None
            return float(info.contents.idle) / 1000
        finally:
            xlib.XFree(info)
    finally:
        xlib.XCloseDisplay(display)


def _mutter_idle() -> float | None:
    output = _run(
        [
            "gdbus",
            "call",
            "--session",
            "--dest",
            "org.gnome.Mutter.IdleMonitor",
            "--object-path",
            "/org/gnome/Mutter/IdleMonitor/Core",
            "--method",
            "org.gnome.Mutter.IdleMonitor.GetIdletime",
        ]
    )
    match = re.search(r"uint64 (\d+)", output or "")
    return int(match.group(1)) / 1000 if match else None


def _macos_idle() -> float | None:
    output = _run(["ioreg", "-c", "IOHIDSystem", "-d", "4"])
    match = re.search(r'"HIDIdleTime" = (\d+)', output or "")
    return int(match.group(1)) / 1_000_000_000 if match else None


def _windows_idle() -> float | None:
    class LastInputInfo(ctypes.Structure):
        _fields_ = [("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint)]

    info = LastInputInfo()
    info.cbSize = ctypes.sizeof(info)
    windll = getattr(ctypes, "windll", None)
    if windll is None or not windll.user32.GetLastInputInfo(ctypes.byref(info)):
        return None
    # Both are 32-bit millisecond tick counts; the mask handles the 49.7-day wrap.
    ticks, last_input = int(windll.kernel32.GetTickCount()), int(info.dwTime)
    return ((ticks - last_input) & 0xFFFFFFFF) / 1000


# --- CPU load of other processes --------------------------------------------------------------


class LoadSource(Protocol):
    def sample(self) -> tuple[float, float]: ...


class LoadSampler:
    """CPU use of the whole machine and of everything but this agent, since the last sample."""

    def __init__(self) -> None:
        self._me = psutil.Process()
        self._last = (time.monotonic(), self._own_cpu_seconds())
        psutil.cpu_percent(interval=None)  # primes the system-wide counter

    def sample(self) -> tuple[float, float]:
        """(total percent of all cores, percent used by other processes)."""
        total = psutil.cpu_percent(interval=None)
        now, own = time.monotonic(), self._own_cpu_seconds()
        elapsed = max(now - self._last[0], 1e-6)
        capacity = elapsed * (psutil.cpu_count() or 1)
        own_percent = 100 * (own - self._last[1]) / capacity
        self._last = (now, own)
        return total, max(0.0, total - own_percent)

    def _own_cpu_seconds(self) -> float:
        times = self._me.cpu_times()
        return float(times.user + times.system)


class Monitor(Protocol):
    """What the client needs from an availability monitor."""

    total_load_percent: float

    def check(self, policy: AvailabilityPolicy, *, jobs_running: bool) -> Availability: ...


class AvailabilityMonitor:
    """Combines the policy, input idle time and load into a verdict each time it is asked."""

    def __init__(
        self,
        *,
        idle_source: Callable[[], float | None] = input_idle_seconds,
        load_sampler: LoadSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._idle_source = idle_source
        self._load: LoadSource = load_sampler or LoadSampler()
        self._clock = clock
        self._wall_clock = wall_clock
        self._last_busy_at = clock()  # for the load fallback: assume in use at start
        self.total_load_percent = 0.0

    def check(self, policy: AvailabilityPolicy, *, jobs_running: bool) -> Availability:
        total, others = self._load.sample()
        self.total_load_percent = total
        idle = self._idle_source() if policy.get("idle_minutes") else None
        if policy.get("idle_minutes") and idle is None:
            idle = self._idle_from_load(others, jobs_running)
        return availability_decide(
            policy,
            now=self._wall_clock(),
            idle_seconds=idle,
            other_load_percent=None if jobs_running else others,
        )

    def _idle_from_load(self, others: float, jobs_running: bool) -> float:
        now = self._clock()
        if others > FALLBACK_BUSY_PERCENT and not jobs_running:
            self._last_busy_at = now
        return now - self._last_busy_at
