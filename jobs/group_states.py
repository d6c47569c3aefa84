"""The state machines of a job group and of its tasks, beside ``jobs.states`` (a job's) and in
its style: a table of legal moves and one function each that makes a move as one conditional
``UPDATE … WHERE status IN (legal sources)``. One row updated means the caller won; none raises
``IllegalTransition``. Nobody reads a status and then writes it.

A group::

    running -> finished    (every task ended, or the cap or the wallet stopped the rest)
            -> cancelled   (cancelled, and every task it had started ended)

A task (an index)::

    pending -> running -> succeeded | failed | cancelled | timed_out | budget_exhausted
       ^          |
       +----------+ (its script failed and an error retry remains: a new job for the index)
    pending -> skipped     (the group's cap, wallet or cancel stopped it: it never starts)

The callers hold the group's row lock (``jobs.services.groups``): the group's counters and its
tasks move together under it.
"""

from __future__ import annotations

from typing import Any

from django.db.models.expressions import Combinable
from django.utils import timezone

from jobs.models import JobGroup, JobGroupStatus, JobGroupTask, JobStatus, TaskStatus
from jobs.states import IllegalTransition

GROUP_ALLOWED_FROM: dict[JobGroupStatus, frozenset[JobGroupStatus]] = {
    JobGroupStatus.RUNNING: frozenset(),  # created running, never moved back
    JobGroupStatus.FINISHED: frozenset({JobGroupStatus.RUNNING}),
    JobGroupStatus.CANCELLED: frozenset({JobGroupStatus.RUNNING}),
}

TASK_FINAL: frozenset[TaskStatus] = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
        TaskStatus.BUDGET_EXHAUSTED,
        TaskStatus.SKIPPED,
    }
)
# The task result of each final job status.
TASK_RESULT: dict[JobStatus, TaskStatus] = {
    JobStatus.SUCCEEDED: TaskStatus.SUCCEEDED,
    JobStatus.FAILED: TaskStatus.FAILED,
    JobStatus.CANCELLED: TaskStatus.CANCELLED,
    JobStatus.TIMED_OUT: TaskStatus.TIMED_OUT,
    JobStatus.BUDGET_EXHAUSTED: TaskStatus.BUDGET_EXHAUSTED,
}
# A job that ended so is the task's script failing: an error retry may run it again.
RETRYABLE: frozenset[JobStatus] = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT})

TASK_ALLOWED_FROM: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.RUNNING}),  # an error retry
    TaskStatus.RUNNING: frozenset({TaskStatus.PENDING}),
    TaskStatus.SKIPPED: frozenset({TaskStatus.PENDING}),
    **{TASK_RESULT[status]: frozenset({TaskStatus.RUNNING}) for status in TASK_RESULT},
}


def group_transition(group: JobGroup, to: JobGroupStatus, reason: str, **changes: Any) -> None:
    """Move the group to ``to`` (an end: ``finished_at`` is stamped) from a legal source.

    One conditional UPDATE; a group elsewhere raises IllegalTransition and nothing changes.
    Updates ``group`` in memory.
    """
    sources = GROUP_ALLOWED_FROM[to]
    values: dict[str, Any] = {"status": to, "status_reason": reason[:500], **changes}
    if to != JobGroupStatus.RUNNING:
        values.setdefault("finished_at", timezone.now())
    if JobGroup.objects.filter(pk=group.pk, status__in=sources).update(**values) != 1:
        raise IllegalTransition(
            f"job group {group.pk} is not in {', '.join(sorted(sources))}",
            code="transition_refused",
        )
    for field, value in values.items():
        setattr(group, field, value)


def task_transition(task: JobGroupTask, to: TaskStatus, reason: str = "", **changes: Any) -> None:
    """Move one task to ``to`` from a legal source: one conditional UPDATE, IllegalTransition
    when it is elsewhere. ``changes`` are written in the same statement (F() expressions are
    left to the database and not mirrored in memory)."""
    sources = TASK_ALLOWED_FROM[to]
    values: dict[str, Any] = {"status": to, "reason": reason[:500], **changes}
    if JobGroupTask.objects.filter(pk=task.pk, status__in=sources).update(**values) != 1:
        raise IllegalTransition(
            f"task {task.index} of group {task.group_id} is not in {', '.join(sorted(sources))}",
            code="transition_refused",
        )
    for field, value in values.items():
        if not isinstance(value, Combinable):
            setattr(task, field, value)


def tasks_skip(group: JobGroup, reason: str) -> int:
    """Every pending task of the group ends ``skipped`` (it will never start): one UPDATE, the
    same conditional move for all of them. How many."""
    return JobGroupTask.objects.filter(group=group, status=TaskStatus.PENDING).update(
        status=TaskStatus.SKIPPED, reason=reason[:500]
    )
