"""THE state machines: the tables of legal transitions and the one function that moves a job
(``job_transition``) and the one that moves an attempt (``attempt_transition``).

::

    queued -> offered -> accepted -> preparing -> running -> succeeded | failed | cancelled
       ^         |          |           |           |         | timed_out | budget_exhausted
       |         |          +-----------+-----------+
       +---------+ (offer rejected/expired)  |  (attempt lost, retries remain)
       +-------------------------------------+
    failed and cancelled are also reachable from every non-final state.

``lost`` is an attempt status, not a job status: a lost attempt sends the job back to
``queued`` (the next offer gets attempt + 1) while retries remain, else to ``failed``.

``job_transition`` is a conditional ``UPDATE … WHERE status IN (legal sources)``: one row
updated means this caller won; zero rows means the job was elsewhere (a race lost, a stale
attempt, or an illegal move) and ``IllegalTransition`` is raised. Nobody reads a status and
then writes it.

An attempt's machine (``ATTEMPT_ALLOWED_FROM``)::

    offered -> accepted -> preparing -> running -> succeeded | failed | cancelled | timed_out
       |          |           |           |         | budget_exhausted | lost
       |          +-----------+-----------+ (any active state may end, or be lost)
       +-> rejected | expired | cancelled (offer withdrawn)

Every end is final. ``attempt_transition`` is the same conditional UPDATE on the attempt row;
callers lock the job row first (the lock order of the jobs app).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from config.errors import Conflict
from jobs import events
from jobs.models import AttemptStatus, Job, JobAttempt, JobStatus

FINAL: frozenset[JobStatus] = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.TIMED_OUT,
        JobStatus.BUDGET_EXHAUSTED,
    }
)
NON_FINAL: frozenset[JobStatus] = frozenset(JobStatus) - FINAL
# States in which a host holds the job (its attempt has a lease).
ACTIVE: frozenset[JobStatus] = frozenset(
    {JobStatus.ACCEPTED, JobStatus.PREPARING, JobStatus.RUNNING}
)
ATTEMPT_ACTIVE: frozenset[AttemptStatus] = frozenset(
    {AttemptStatus.ACCEPTED, AttemptStatus.PREPARING, AttemptStatus.RUNNING}
)
# An attempt whose end the agent reported (or the server decided: budget_exhausted).
ATTEMPT_FINISHED: frozenset[AttemptStatus] = frozenset(
    {
        AttemptStatus.SUCCEEDED,
        AttemptStatus.FAILED,
        AttemptStatus.CANCELLED,
        AttemptStatus.TIMED_OUT,
        AttemptStatus.BUDGET_EXHAUSTED,
    }
)
# An attempt that may still become (or is) a run: offered or active.
ATTEMPT_OPEN: frozenset[AttemptStatus] = ATTEMPT_ACTIVE | {AttemptStatus.OFFERED}

ATTEMPT_ENDED: frozenset[AttemptStatus] = ATTEMPT_FINISHED | {
    AttemptStatus.REJECTED,
    AttemptStatus.EXPIRED,
    AttemptStatus.LOST,
}

# For each target state, the states an attempt may come from.
ATTEMPT_ALLOWED_FROM: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.OFFERED: frozenset(),  # created offered, never moved back
    AttemptStatus.ACCEPTED: frozenset({AttemptStatus.OFFERED}),
    AttemptStatus.PREPARING: frozenset({AttemptStatus.ACCEPTED}),
    AttemptStatus.RUNNING: frozenset({AttemptStatus.ACCEPTED, AttemptStatus.PREPARING}),
    AttemptStatus.REJECTED: frozenset({AttemptStatus.OFFERED}),
    AttemptStatus.EXPIRED: frozenset({AttemptStatus.OFFERED}),
    AttemptStatus.LOST: ATTEMPT_ACTIVE,
    **{end: ATTEMPT_ACTIVE for end in ATTEMPT_FINISHED},
    AttemptStatus.CANCELLED: ATTEMPT_OPEN,  # an offer withdrawn, or a run the agent cancelled
}

# For each target state, the states a job may come from.
ALLOWED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.OFFERED}) | ACTIVE,
    JobStatus.OFFERED: frozenset({JobStatus.QUEUED}),
    JobStatus.ACCEPTED: frozenset({JobStatus.OFFERED}),
    JobStatus.PREPARING: frozenset({JobStatus.ACCEPTED}),
    JobStatus.RUNNING: frozenset({JobStatus.ACCEPTED, JobStatus.PREPARING}),
    JobStatus.SUCCEEDED: ACTIVE,
    JobStatus.FAILED: NON_FINAL,
    JobStatus.CANCELLED: NON_FINAL,
    JobStatus.TIMED_OUT: ACTIVE,
    JobStatus.BUDGET_EXHAUSTED: ACTIVE,
}


class IllegalTransition(Conflict):
    default_code = "illegal_transition"


def transition_sources(
    target: JobStatus, expected_from: Iterable[JobStatus] | None = None
) -> frozenset[JobStatus]:
    """The source states for a move to ``target``, narrowed by ``expected_from``.

    Raises IllegalTransition when ``expected_from`` names a source the table forbids: the
    caller asked for a move that can never be legal.
    """
    allowed = ALLOWED_FROM[target]
    if expected_from is None:
        return allowed
    sources = frozenset(JobStatus(s) for s in expected_from)
    illegal = sources - allowed
    if illegal:
        names = ", ".join(sorted(illegal))
        raise IllegalTransition(f"a job cannot go from {names} to {target}")
    return sources


def job_transition(
    job: Job,
    to: JobStatus,
    reason: str,
    *,
    expected_from: Iterable[JobStatus] | None = None,
    at_attempt: int | None = None,
    **changes: Any,
) -> None:
    """Move ``job`` to ``to`` if it is in a legal source state (and at ``at_attempt``, if given).

    A single conditional UPDATE: the row lock it takes serialises racing callers, and only one
    of them sees its row updated. ``changes`` are other fields written in the same statement.
    Updates ``job`` in memory and, after commit, tells the owner's socket.
    """
    sources = transition_sources(to, expected_from)
    now = timezone.now()
    values: dict[str, Any] = {
        "status": to,
        "status_reason": reason[:500],
        "updated_at": now,
        **changes,
    }
    if to in FINAL:
        values.setdefault("finished_at", now)
    if to == JobStatus.QUEUED:
        values["queued_at"] = now
    rows = Job.objects.filter(pk=job.pk, status__in=sources)
    if at_attempt is not None:
        rows = rows.filter(attempt=at_attempt)
    if rows.update(**values) != 1:
        raise IllegalTransition(
            f"job {job.pk} is not in {', '.join(sorted(sources))}"
            + ("" if at_attempt is None else f" at attempt {at_attempt}"),
            code="transition_refused",
        )
    for field, value in values.items():
        setattr(job, field, value)
    snapshot = job_status_event(job)
    transaction.on_commit(lambda: events.job_event_push(job.pk, snapshot))


def attempt_transition(
    attempt: JobAttempt,
    to: AttemptStatus,
    reason: str | None = None,
    *,
    expected_from: Iterable[AttemptStatus] | None = None,
    lease_expired_at: datetime | None = None,
    offer_expired_at: datetime | None = None,
    **changes: Any,
) -> None:
    """Move ``attempt`` to ``to`` if it is in a legal source state: one conditional UPDATE.

    ``expected_from`` narrows the sources (a source the table forbids raises at once);
    ``lease_expired_at`` / ``offer_expired_at`` add "and its lease / offer had expired by
    then". An end stamps ``finished_at``. Zero rows updated (a race lost, or an illegal move)
    raises IllegalTransition and changes nothing. Updates ``attempt`` in memory.
    """
    allowed = ATTEMPT_ALLOWED_FROM[to]
    sources = allowed if expected_from is None else frozenset(expected_from)
    if sources - allowed:
        names = ", ".join(sorted(sources - allowed))
        raise IllegalTransition(f"an attempt cannot go from {names} to {to}")
    values: dict[str, Any] = {"status": to, **changes}
    if reason is not None:
        values["reason"] = reason[:500]
    if to in ATTEMPT_ENDED:
        values.setdefault("finished_at", timezone.now())
    rows = JobAttempt.objects.filter(pk=attempt.pk, status__in=sources)
    if lease_expired_at is not None:
        rows = rows.filter(lease_expires_at__lte=lease_expired_at)
    if offer_expired_at is not None:
        rows = rows.filter(offer_expires_at__lte=offer_expired_at)
    if rows.update(**values) != 1:
        raise IllegalTransition(
            f"attempt {attempt.number} of job {attempt.job_id} is not in "
            + ", ".join(sorted(sources)),
            code="transition_refused",
        )
    for field, value in values.items():
        setattr(attempt, field, value)


def job_status_event(job: Job) -> dict[str, Any]:
    """What the owner's socket shows for a status change."""
    return {
        "type": "job.status",
        "job_id": job.pk,
        "status": str(job.status),
        "status_reason": job.status_reason,
        "attempt": job.attempt,
        "host": job.host_id,
        "exit_code": job.exit_code,
        "cost_micros": job.cost_micros,
    }
