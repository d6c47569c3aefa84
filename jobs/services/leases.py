"""Leases and the agent's view of what it runs: heartbeats, reconnects, pending cancels.

The hosts consumer calls these: ``leases_renew`` on every heartbeat, ``welcome_decide`` when
an agent says hello, ``cancels_pending`` to repeat cancels in heartbeat replies.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from agent.protocol import STALE_ATTEMPT_REASON_PREFIX, JobCancel, RunningJobRef
from jobs.models import JobAttempt
from jobs.services.cancel import CANCEL_REASON
from jobs.services.dispatch import attempt_lose
from jobs.states import ATTEMPT_ACTIVE, ATTEMPT_OPEN

STALE_REASON = f"{STALE_ATTEMPT_REASON_PREFIX}: the server no longer runs it on this host"


def _refs_filter(refs: Iterable[RunningJobRef]) -> Q:
    condition = Q(pk__in=[])
    for ref in refs:
        condition |= Q(job_id=ref["job_id"], number=ref["attempt"])
    return condition


def _open_refs(host_id: int, refs: list[RunningJobRef]) -> set[tuple[int, int]]:
    if not refs:
        return set()
    rows = JobAttempt.objects.filter(_refs_filter(refs), host_id=host_id, status__in=ATTEMPT_OPEN)
    return set(rows.values_list("job_id", "number"))


def leases_renew(
    host_id: int, running_jobs: list[RunningJobRef], *, now: datetime | None = None
) -> list[JobCancel]:
    """Extend the leases of the attempts this host reports and holds; name the ones to kill.

    The agent must list every attempt it holds, from accept on. Reported jobs the server
    does not run on this host (lost, cancelled, someone else's) come back as cancels.
    """
    now = now or timezone.now()
    if running_jobs:
        JobAttempt.objects.filter(
            _refs_filter(running_jobs), host_id=host_id, status__in=ATTEMPT_ACTIVE
        ).update(lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS))
    known = _open_refs(host_id, running_jobs)
    return [
        JobCancel(job_id=ref["job_id"], attempt=ref["attempt"], reason=STALE_REASON)
        for ref in running_jobs
        if (ref["job_id"], ref["attempt"]) not in known
    ]


def leases_cut(host_id: int, *, seconds: int, now: datetime | None = None) -> int:
    """The host's agent disconnected: what it runs is lost ``seconds`` from now (the reaper
    loses expired leases) unless it says hello again first (``welcome_decide`` renews them)."""
    until = (now or timezone.now()) + timedelta(seconds=seconds)
    return JobAttempt.objects.filter(
        host_id=host_id, status__in=ATTEMPT_ACTIVE, lease_expires_at__gt=until
    ).update(lease_expires_at=until)


def welcome_decide(
    host_id: int, running_jobs: list[RunningJobRef], *, now: datetime | None = None
) -> tuple[list[RunningJobRef], list[RunningJobRef]]:
    """For a reconnecting agent: which of its containers to keep and which to kill.

    Keeps the attempts the server still runs on this host (renewing their leases); kills the
    rest and those with a pending cancel. Attempts the server thinks this host runs but the
    agent no longer reports are lost at once (requeued while retries remain), so a job either
    resumes or runs again elsewhere, never both.
    """
    now = now or timezone.now()
    cancels = {(c["job_id"], c["attempt"]) for c in leases_renew(host_id, running_jobs, now=now)}
    cancels |= {(c["job_id"], c["attempt"]) for c in cancels_pending(host_id)}
    keep = [r for r in running_jobs if (r["job_id"], r["attempt"]) not in cancels]
    kill = [r for r in running_jobs if (r["job_id"], r["attempt"]) in cancels]
    reported = {(r["job_id"], r["attempt"]) for r in running_jobs}
    vanished = JobAttempt.objects.filter(host_id=host_id, status__in=ATTEMPT_ACTIVE)
    for pk, job_id, number in vanished.values_list("pk", "job_id", "number"):
        if (job_id, number) not in reported:
            attempt_lose(pk, "the agent restarted without it", now=now, lease_expired=False)
    return keep, kill


def cancels_pending(host_id: int) -> list[JobCancel]:
    """Cancels to repeat to this host until its agent reports the jobs finished."""
    attempts = JobAttempt.objects.filter(
        host_id=host_id, status__in=ATTEMPT_ACTIVE, job__cancel_requested_at__isnull=False
    ).order_by("pk")
    return [
        JobCancel(job_id=job_id, attempt=number, reason=CANCEL_REASON)
        for job_id, number in attempts.values_list("job_id", "number")
    ]
