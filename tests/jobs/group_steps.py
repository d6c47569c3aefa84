"""Shared steps of the job group tests: a group created through the API, its tasks' jobs, and a
host's agent running one to its end (through the handlers the agent socket calls).

Rates as tests/jobs/metering_steps.py's: 1 µcr per CPU-millisecond and, for the 512 MB a
task reserves, half a µcr per wall millisecond (floored once on the total).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from hosts.models import Host
from jobs.models import Job, JobAttempt, JobGroup, JobStatus
from jobs.states import FINAL
from tests.jobs.helpers import say
from tests.jobs.metering_steps import RATES, final

TASK_CAP = 200_000
GROUP_CAP = 2_000_000


def group_body(**overrides: Any) -> dict[str, Any]:
    """A create request (POST /api/v1/job-groups/); an override of None drops that field."""
    values: dict[str, Any] = {
        "code": "import json\nprint('task')\n",
        "placement": "auto",
        "cpus": 2,
        "memory_mb": 512,
        "timeout_seconds": 600,
        "task_max_cost_micros": TASK_CAP,
        "max_cost_micros": GROUP_CAP,
        "count": 5,
        "max_parallel": 2,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def hosts_for_groups(make_host: Any, owner: Any, count: int = 2, slots: int = 4) -> list[Host]:
    """Hosts at RATES with room for several 2-CPU tasks each."""
    return [make_host(owner, f"box-{n}", cpus=8, slots=slots, **RATES) for n in range(count)]


def open_jobs(group: JobGroup | int) -> list[Job]:
    """The group's jobs that have not ended, by index."""
    return list(
        Job.objects.filter(group=group).exclude(status__in=FINAL).order_by("task_index", "pk")
    )


def task_run(
    job: Job,
    *,
    cpu_ms: int = 0,
    wall_ms: int = 0,
    status: str = "succeeded",
    exit_code: int = 0,
) -> Job:
    """The job's host accepts its offer, runs it (the server saw it start an hour ago, so the
    counters are possible) and reports it finished with these final counters."""
    job.refresh_from_db()
    assert job.status == JobStatus.OFFERED, (job.pk, job.status, job.status_reason)
    host = host_of(job)
    number = job.attempt
    say(host, "job.accept", job_id=job.pk, attempt=number)
    say(host, "job.started", job_id=job.pk, attempt=number, phase="running")
    JobAttempt.objects.filter(job=job, number=number).update(
        started_at=timezone.now() - timedelta(hours=1)
    )
    reason = "exit code 0" if status == "succeeded" else f"exit code {exit_code}"
    say(
        host,
        "job.finished",
        **final(
            job,
            9,
            str(cpu_ms / 1000),
            str(wall_ms / 1000),
            attempt=number,
            status=status,
            exit_code=exit_code,
            reason=reason,
        ),
    )
    job.refresh_from_db()
    return job


def host_of(job: Job) -> Host:
    """The host of the job's current attempt."""
    assert job.host_id is not None, (job.pk, job.status)
    return Host.objects.get(pk=job.host_id)


def task_cost(cpu_ms: int, wall_ms: int) -> int:
    """What those counters cost at RATES for a 512 MB task, uncapped."""
    return cpu_ms + wall_ms // 2
