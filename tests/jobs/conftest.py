"""Fixtures for the jobs tests: hosts, a wallet, the wire to agents, the owner's socket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import User
from agent.protocol import encode, new_id
from hosts.models import Host, HostStatus
from tests.jobs.real_ledger import RealLedger


@pytest.fixture
def make_host(db: None) -> Callable[..., Host]:
    def make(owner: User, name: str = "box", **extra: Any) -> Host:
        values: dict[str, Any] = {
            "cpus": 8,
            "memory_mb": 16384,
            "cpu_core_hour_micros": 100_000,
            "memory_gb_hour_micros": 10_000,
            "gpu_hour_micros": 0,
            "status": HostStatus.ONLINE,
            "last_seen_at": timezone.now(),
            "docker_available": True,
            # room for a job's default disk (/work, /outputs, /tmp: 2304 MB) and its inputs
            "disk_free_mb": 100_000,
            **extra,
        }
        # what the agent advertises by default: a slot per core (with 2 GB each)
        values.setdefault("slots", min(values["cpus"], values["memory_mb"] // 2048, 64))
        return Host.objects.create(owner=owner, name=name, **values)

    return make


@pytest.fixture
def ledger(db: None) -> RealLedger:
    """The real ledger, read through the few figures the jobs tests look at."""
    return RealLedger()


class Wire:
    """What the server pushed: messages to agents and events to owners' sockets."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, dict[str, Any]]] = []
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.group_events: list[tuple[int, dict[str, Any]]] = []

    def to(self, host_id: int, message_type: str | None = None) -> list[dict[str, Any]]:
        return [
            data
            for host, kind, data in self.sent
            if host == host_id and message_type in (None, kind)
        ]

    def event_types(self, job_id: int) -> list[str]:
        return [event["type"] for job, event in self.events if job == job_id]

    def clear(self) -> None:
        self.sent.clear()
        self.events.clear()
        self.group_events.clear()


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    recorded = Wire()
    monkeypatch.setattr(
        "jobs.agent_link.agent_send",
        lambda host_id, kind, data: recorded.sent.append((host_id, kind, dict(data))),
    )
    monkeypatch.setattr(
        "jobs.events.job_event_push",
        lambda job_id, event: recorded.events.append((job_id, dict(event))),
    )
    monkeypatch.setattr(
        "jobs.events.job_events_push",
        lambda pushes: recorded.events.extend((job_id, dict(e)) for job_id, e in pushes),
    )
    monkeypatch.setattr(
        "jobs.events.group_event_push",
        lambda group_id, event: recorded.group_events.append((group_id, dict(event))),
    )
    return recorded


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    """``with committed():`` runs what the block registered with on_commit at its end."""

    @contextmanager
    def run() -> Iterator[None]:
        with django_capture_on_commit_callbacks(execute=True):
            yield

    return run


def envelope(message_type: str, **data: Any) -> Any:
    """A decoded envelope, as the hosts consumer hands it to a handler."""
    import json

    return json.loads(encode(message_type, data, new_id()))
