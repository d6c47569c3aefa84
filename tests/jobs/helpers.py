"""Small helpers shared by the jobs tests."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from jobs.agent_messages import HANDLERS, handle_heartbeat
from jobs.models import Job
from jobs.services.submit import job_submit
from jobs.validation import JobSubmission
from tests.jobs.conftest import envelope


def body(**overrides: Any) -> dict[str, Any]:
    """A submit request body (POST /api/v1/jobs/); an override of None drops that field."""
    values: dict[str, Any] = {
        "code": "print('hello')",
        "placement": "auto",
        "cpus": 1,
        "memory_mb": 1024,
        "timeout_seconds": 600,
        "max_cost_micros": 1_000_000,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def submit(owner: Any, *, host: Any = None, **overrides: Any) -> Job:
    values: dict[str, Any] = {
        "entrypoint": None,
        "requirements": [],
        "cpus": Decimal(1),
        "memory_mb": 1024,
        "gpus": 0,
        "timeout_seconds": 600,
        "max_cost_micros": 1_000_000,
        "host_id": None if host is None else host.pk,
        "code": "print('hi')",
    }
    values.update(overrides)
    return job_submit(owner=owner, submission=JobSubmission(**values))


def usage(job: Job, attempt: int, seq: int = 1, **overrides: Any) -> dict[str, Any]:
    values = {
        "job_id": job.pk,
        "attempt": attempt,
        "seq": seq,
        "cpu_seconds": 1.0,
        "wall_seconds": 2.0,
        "memory_peak_mb": 10,
        "memory_current_mb": 8,
        "gpu_seconds": 0.0,
    }
    values.update(overrides)
    return values


def finished(job: Job, attempt: int, status: str = "succeeded", **overrides: Any) -> dict[str, Any]:
    values = {
        "job_id": job.pk,
        "attempt": attempt,
        "status": status,
        "reason": "exit code 0" if status == "succeeded" else status,
        "exit_code": 0 if status == "succeeded" else 1,
        "outputs": [],
        # A run that used nothing (metering's own tests send real counters).
        "usage": usage(job, attempt, seq=9, cpu_seconds=0.0, wall_seconds=0.0, is_final=True),
    }
    values.update(overrides)
    return values


def say(host: Any, message_type: str, **data: Any) -> list[tuple[str, dict[str, Any]]]:
    """The host's agent sends one message; returns the server's replies (a heartbeat's job
    part: the socket runs it after the presence update)."""
    handler = handle_heartbeat if message_type == "heartbeat" else HANDLERS[message_type]
    return handler(host.pk, envelope(message_type, **data))


def lease_of(job: Job, number: int = 1) -> datetime:
    lease = job.attempts.get(number=number).lease_expires_at
    assert lease is not None
    return lease


def reply_types(replies: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [kind for kind, _ in replies]
