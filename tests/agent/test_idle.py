from datetime import UTC, datetime
from typing import Any

import pytest

from agent import idle
from agent.idle import (
    AVAILABLE,
    Availability,
    AvailabilityMonitor,
    availability_decide,
    window_contains,
)


def _policy(**overrides):
    policy: dict[str, Any] = {
        "timezone": "UTC",
        "windows": [],
        "idle_minutes": None,
        "max_load": None,
    }
    policy.update(overrides)
    return policy


# 2026-11-23 is a Monday.
MONDAY_NOON_UTC = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "moment", "inside"),
    [
        ({"days": [0], "start": "09:00", "end": "17:00"}, MONDAY_NOON_UTC, True),
        ({"days": [1], "start": "09:00", "end": "17:00"}, MONDAY_NOON_UTC, False),
        ({"days": [0], "start": "12:00", "end": "12:30"}, MONDAY_NOON_UTC, True),
        ({"days": [0], "start": "11:00", "end": "12:00"}, MONDAY_NOON_UTC, False),
        (
            {"days": [0], "start": "22:00", "end": "06:00"},
            datetime(2026, 11, 23, 23, 0, tzinfo=UTC),
            True,
        ),
        # the morning part of Monday night's window is on Tuesday
        (
            {"days": [0], "start": "22:00", "end": "06:00"},
            datetime(2026, 11, 24, 5, 59, tzinfo=UTC),
            True,
        ),
        (
            {"days": [0], "start": "22:00", "end": "06:00"},
            datetime(2026, 11, 23, 5, 0, tzinfo=UTC),
            False,
        ),
        (
            {"days": [6], "start": "00:00", "end": "24:00"},
            datetime(2026, 11, 29, 23, 59, tzinfo=UTC),
            True,
        ),
    ],
)
def test_time_windows(window, moment, inside):
    assert window_contains(_policy(windows=[window]), moment) is inside


def test_windows_are_read_in_the_hosts_time_zone():
    # 12:00 UTC is 21:00 in Tokyo
    policy = _policy(
        timezone="Asia/Tokyo", windows=[{"days": [0], "start": "20:00", "end": "22:00"}]
    )

    assert window_contains(policy, MONDAY_NOON_UTC) is True
    assert window_contains(_policy(windows=policy["windows"]), MONDAY_NOON_UTC) is False


def test_an_unknown_time_zone_falls_back_to_utc():
    policy = _policy(
        timezone="Mars/Olympus", windows=[{"days": [0], "start": "11:00", "end": "13:00"}]
    )

    assert window_contains(policy, MONDAY_NOON_UTC) is True


@pytest.mark.parametrize(
    ("policy", "idle_seconds", "load", "expected"),
    [
        (_policy(), None, None, AVAILABLE),
        (
            _policy(windows=[{"days": [3], "start": "09:00", "end": "10:00"}]),
            9999,
            0,
            Availability(False, "outside_time_window"),
        ),
        (_policy(idle_minutes=10), 599, 0, Availability(False, "user_active")),
        (_policy(idle_minutes=10), 600, 0, AVAILABLE),
        (_policy(idle_minutes=10), None, 0, AVAILABLE),
        (_policy(max_load=25), None, 25.0, AVAILABLE),
        (_policy(max_load=25), None, 25.1, Availability(False, "cpu_busy")),
        (_policy(max_load=25), None, None, AVAILABLE),
    ],
)
def test_availability_decide(policy, idle_seconds, load, expected):
    verdict = availability_decide(
        policy, now=MONDAY_NOON_UTC, idle_seconds=idle_seconds, other_load_percent=load
    )

    assert verdict == expected


class FakeSampler:
    def __init__(self):
        self.samples = []

    def sample(self):
        return self.samples.pop(0)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_monitor_uses_input_idle_time_where_the_os_has_it():
    sampler = FakeSampler()
    sampler.samples = [(50.0, 40.0)]
    monitor = AvailabilityMonitor(
        idle_source=lambda: 30.0, load_sampler=sampler, wall_clock=lambda: MONDAY_NOON_UTC
    )

    verdict = monitor.check(_policy(idle_minutes=1), jobs_running=False)

    assert verdict == Availability(False, "user_active")
    assert monitor.total_load_percent == 50.0


def test_monitor_falls_back_to_cpu_load_without_input_idle_time():
    # given: no input idle source; other processes busy, then quiet for a minute
    sampler, clock = FakeSampler(), Clock()
    sampler.samples = [(80.0, 80.0), (3.0, 2.0), (3.0, 2.0)]
    monitor = AvailabilityMonitor(
        idle_source=lambda: None,
        load_sampler=sampler,
        clock=clock,
        wall_clock=lambda: MONDAY_NOON_UTC,
    )
    policy = _policy(idle_minutes=1)

    # when / then
    assert monitor.check(policy, jobs_running=False) == Availability(False, "user_active")
    clock.now += 30
    assert monitor.check(policy, jobs_running=False) == Availability(False, "user_active")
    clock.now += 31
    assert monitor.check(policy, jobs_running=False) == AVAILABLE


def test_the_load_ceiling_is_not_applied_while_our_jobs_run():
    sampler = FakeSampler()
    sampler.samples = [(100.0, 95.0)]
    monitor = AvailabilityMonitor(
        idle_source=lambda: None, load_sampler=sampler, wall_clock=lambda: MONDAY_NOON_UTC
    )

    assert monitor.check(_policy(max_load=25), jobs_running=True) == AVAILABLE


def test_the_real_load_sampler_reports_percentages():
    sampler = idle.LoadSampler()

    total, others = sampler.sample()

    assert 0.0 <= others <= total <= 100.0


def test_macos_idle_time_comes_from_ioreg(monkeypatch):
    output = '    |   "HIDIdleTime" = 123456789000\n    |   "HIDKeyboard" = 1\n'
    monkeypatch.setattr(idle, "_run", lambda command: output if command[0] == "ioreg" else None)

    assert idle._macos_idle() == pytest.approx(123.456789)


def test_x11_idle_time_comes_from_xprintidle(monkeypatch):
    monkeypatch.setattr(idle, "_run", lambda command: "4200\n")

    assert idle._xprintidle() == 4.2


def test_gnome_wayland_idle_time_comes_from_mutter(monkeypatch):
    monkeypatch.setattr(idle, "_run", lambda command: "(uint64 61000,)\n")

    assert idle._mutter_idle() == 61.0


def test_without_a_display_input_idle_time_is_unknown(monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)

    assert idle.input_idle_seconds() is None
