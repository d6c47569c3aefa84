"""Reads of jobs: the renter's own jobs, and what hosts already run (for placement)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal

from django.db.models import QuerySet, Sum
from django.utils import timezone

from accounts.models import User
from config.errors import NotFound
from jobs.models import Job, JobAttempt, JobOutput
from jobs.states import ATTEMPT_OPEN, FINAL
from ledger.services import JobFact
from marketplace.placement import Candidate, JobSpec


def job_spec(job: Job) -> JobSpec:
    return JobSpec(
        cpus=Decimal(job.cpus),
        memory_mb=job.memory_mb,
        gpus=job.gpus,
        timeout_seconds=job.timeout_seconds,
    )


def candidates_loaded(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates with what their open attempts (offered or running) already take."""
    candidates = list(candidates)
    rows = (
        JobAttempt.objects.filter(
            host_id__in=[c.host_id for c in candidates], status__in=ATTEMPT_OPEN
        )
        .values("host_id")
        .annotate(cpus=Sum("job__cpus"), memory=Sum("job__memory_mb"), gpus=Sum("job__gpus"))
    )
    loads = {row["host_id"]: row for row in rows}
    return [
        dataclasses.replace(
            c,
            used_cpus=Decimal(loads[c.host_id]["cpus"]),
            used_memory_mb=int(loads[c.host_id]["memory"]),
            used_gpus=int(loads[c.host_id]["gpus"]),
        )
        if c.host_id in loads
        else c
        for c in candidates
    ]


# A finished job's escrow is released right after it ends, or by the reaper within seconds;
# only past this grace does a non-empty escrow count as a reconciliation problem.
SETTLE_GRACE = timedelta(minutes=5)


def job_facts(job_ids: frozenset[int]) -> dict[int, JobFact]:
    """Reconciliation facts for the ledger (LEDGER_JOB_FACTS_PROVIDER): finished? the cap.

    A job that doesn't exist runs nothing, so it counts as finished: a hold left in its escrow
    is stranded (job rows are committed before their hold and never deleted after it).
    """
    settled_before = timezone.now() - SETTLE_GRACE
    rows = Job.objects.filter(pk__in=job_ids).values_list(
        "pk", "status", "hold_released_at", "finished_at", "max_cost_micros"
    )
    facts = {pk: JobFact(is_finished=True) for pk in job_ids}
    for pk, status, released, finished, cap in rows:
        facts[pk] = JobFact(
            is_finished=status in FINAL
            and (released is not None or (finished is not None and finished < settled_before)),
            cap_micros=cap,
        )
    return facts


def jobs_of(user: User) -> QuerySet[Job]:
    return Job.objects.filter(owner=user).order_by("-created_at", "-pk")


def job_of(user: User, job_id: int) -> Job:
    """The user's job; NotFound for someone else's, so ids of others' jobs reveal nothing."""
    job = Job.objects.filter(owner=user, pk=job_id).first()
    if job is None:
        raise NotFound("no such job")
    return job


def job_latest_attempt(job: Job) -> JobAttempt | None:
    return job.attempts.order_by("-number").first()


def job_outputs(job: Job) -> QuerySet[JobOutput]:
    """Uploaded outputs of the attempt that finished the job (the latest one with outputs)."""
    latest = (
        JobOutput.objects.filter(job=job, uploaded_at__isnull=False)
        .order_by("-attempt__number")
        .values_list("attempt_id", flat=True)
        .first()
    )
    return JobOutput.objects.filter(attempt_id=latest, uploaded_at__isnull=False).order_by("name")
