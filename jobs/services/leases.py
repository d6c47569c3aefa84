"""Leases and the agent's view of what it runs: heartbeats, reconnects, pending cancels.

The agent socket calls these: ``heartbeat_leases`` once per flush of the heartbeats its
process received and the presence of the sockets it holds (jobs.heartbeat_batch),
``welcome_decide`` when an agent says hello (with ``leases_renew`` and ``cancels_pending`` for
that one host).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from agent.protocol import STALE_ATTEMPT_REASON_PREFIX, JobCancel, RunningJobRef
from config.sql import is_postgres, server_bound_cursor
from jobs.models import Job, JobAttempt
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


def heartbeat_leases(
    running: dict[int, list[RunningJobRef]],
    *,
    refreshed: Collection[int] = (),
    now: datetime | None = None,
) -> dict[int, list[JobCancel]]:
    """For hosts whose heartbeats were just recorded (host id -> the attempts its agent
    reports): renew the leases of the reported attempts each host holds, and name, per host,
    the cancels to send: its pending cancels (as ``cancels_pending``, in attempt order), then
    the reported attempts the server does not run there (as ``leases_renew``), but for the
    ``refreshed`` hosts, whose report is the agent's last one again (a presence refresh,
    jobs.heartbeat_batch): what it named may have ended since, and the agent's next report
    says so.

    One read and at most one UPDATE for all the hosts, however many: the read takes every open
    attempt of these hosts with its job's cancel request, and the rest is decided here.
    """
    now = now or timezone.now()
    rows = _open_attempts(sorted(running))
    reported = {
        (host, ref["job_id"], ref["attempt"]) for host, refs in running.items() for ref in refs
    }
    cancels: dict[int, list[JobCancel]] = {host_id: [] for host_id in running}
    known: set[tuple[int, int, int]] = set()
    renewed: list[int] = []
    for pk, host_id, job_id, number, status, cancel_requested_at in rows:
        known.add((host_id, job_id, number))
        if status not in ATTEMPT_ACTIVE:
            continue
        if cancel_requested_at is not None:
            cancels[host_id].append(JobCancel(job_id=job_id, attempt=number, reason=CANCEL_REASON))
        if (host_id, job_id, number) in reported:
            renewed.append(pk)
    if renewed:
        JobAttempt.objects.filter(pk__in=renewed, status__in=ATTEMPT_ACTIVE).update(
            lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS)
        )
    for host_id, refs in running.items():
        if host_id in refreshed:
            continue
        cancels[host_id] += [
            JobCancel(job_id=ref["job_id"], attempt=ref["attempt"], reason=STALE_REASON)
            for ref in refs
            if (host_id, ref["job_id"], ref["attempt"]) not in known
        ]
    return cancels


def _open_attempts(host_ids: list[int]) -> list[tuple[Any, ...]]:
    """(pk, host, job, number, status, the job's cancel request) of the hosts' open attempts,
    in pk order: on PostgreSQL one ``= ANY(array)`` bound on the server (config.sql)."""
    if not is_postgres():
        rows = JobAttempt.objects.filter(host_id__in=host_ids, status__in=ATTEMPT_OPEN)
        fields = ("pk", "host_id", "job_id", "number", "status", "job__cancel_requested_at")
        return list(rows.order_by("pk").values_list(*fields))
    with server_bound_cursor() as cursor:
        hosts = "{" + ",".join(map(str, host_ids)) + "}"  # one literal: see hosts.services
        cursor.execute(_OPEN_ATTEMPTS_SQL, [hosts, sorted(ATTEMPT_OPEN)])
        return list(cursor.fetchall())


_OPEN_ATTEMPTS_SQL = (
    f"SELECT a.id, a.host_id, a.job_id, a.number, a.status, j.cancel_requested_at "  # noqa: S608  (our models' names)
    f"FROM {JobAttempt._meta.db_table} a JOIN {Job._meta.db_table} j ON j.id = a.job_id "
    "WHERE a.host_id = ANY(%s::bigint[]) AND a.status = ANY(%s::text[]) ORDER BY a.id"
)


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
