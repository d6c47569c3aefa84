"""Validating an owner's availability policy (the agent evaluates it: agent/idle.py).

The stored form is ``agent.protocol.AvailabilityPolicy``: a time zone, weekly windows in that
time zone, minutes without keyboard/mouse input, and a ceiling on the CPU load of other
processes. Plain functions, no database.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.protocol import AvailabilityPolicy, TimeWindow
from config.errors import ValidationFailed

MAX_WINDOWS = 50
MAX_IDLE_MINUTES = 24 * 60
_TIME = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*$")
_KEYS = {"timezone", "windows", "idle_minutes", "max_load"}


def policy_default() -> AvailabilityPolicy:
    """Any time, whether or not someone uses the machine."""
    return AvailabilityPolicy(timezone="UTC", windows=[], idle_minutes=None, max_load=None)


def policy_normalise(stored: dict[str, Any]) -> AvailabilityPolicy:
    """The stored policy with defaults filled in (an empty dict means the default policy)."""
    return {**policy_default(), **stored}  # type: ignore[typeddict-item]


def policy_clean(raw: Any) -> AvailabilityPolicy:
    """Return the canonical policy or raise ValidationFailed naming each bad field."""
    if not isinstance(raw, dict):
        raise ValidationFailed("availability_policy must be an object", code="invalid_policy")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValidationFailed(
            f"unknown policy fields: {', '.join(sorted(unknown))}", code="invalid_policy"
        )
    merged = {**policy_default(), **raw}
    problems: dict[str, str] = {}
    timezone_problem = _timezone_problem(merged["timezone"])
    if timezone_problem:
        problems["timezone"] = timezone_problem
    windows, windows_problem = _windows_clean(merged["windows"])
    if windows_problem:
        problems["windows"] = windows_problem
    idle = merged["idle_minutes"]
    if idle is not None and not (_is_int(idle) and 0 <= idle <= MAX_IDLE_MINUTES):
        problems["idle_minutes"] = f"null or an integer from 0 to {MAX_IDLE_MINUTES}"
    load = merged["max_load"]
    if load is not None and not (_is_number(load) and 0 <= load <= 100):
        problems["max_load"] = "null or a percentage from 0 to 100"
    if problems:
        raise ValidationFailed(
            "invalid availability policy", code="invalid_policy", fields=problems
        )
    return AvailabilityPolicy(
        timezone=merged["timezone"],
        windows=windows,
        idle_minutes=idle,
        max_load=None if load is None else float(load),
    )


def _timezone_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return "an IANA time zone name such as Europe/Berlin"
    if not _ZONE_NAME.match(name):
        return f"unknown time zone {name!r}"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}"
    return None


def _windows_clean(raw: Any) -> tuple[list[TimeWindow], str | None]:
    if not isinstance(raw, list) or len(raw) > MAX_WINDOWS:
        return [], f"a list of at most {MAX_WINDOWS} windows"
    windows: list[TimeWindow] = []
    for index, window in enumerate(raw):
        if not isinstance(window, dict) or set(window) != {"days", "start", "end"}:
            return [], f"window {index} needs exactly days, start and end"
        days, start, end = window["days"], window["start"], window["end"]
        if (
            not isinstance(days, list)
            or not days
            or not all(_is_int(day) and 0 <= day <= 6 for day in days)
        ):
            return [], f"window {index}: days are weekdays 0 (Monday) to 6 (Sunday)"
        if not all(isinstance(t, str) and _TIME.match(t) for t in (start, end)):
            return [], f"window {index}: start and end are HH:MM (end may be 24:00)"
        if start == end or start == "24:00":
            return [], f"window {index}: start must differ from end and be before 24:00"
        windows.append(TimeWindow(days=sorted(set(days)), start=start, end=end))
    return windows, None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
