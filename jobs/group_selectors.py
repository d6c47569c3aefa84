"""Reads of job groups: the owner's groups, a group's progress and cost, its tasks, its results
in index order, its receipt (the sum of its tasks' receipts), and the blobs its tasks will read.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypedDict

from django.db.models import Count, Q, QuerySet, Sum

from accounts.models import User
from config.errors import NotFound
from jobs.billing import paid_by
from jobs.group_states import TASK_FINAL
from jobs.models import (
    Job,
    JobGroup,
    JobGroupInput,
    JobGroupStatus,
    JobGroupTask,
    JobOutput,
    TaskStatus,
)
from ledger.selectors import JobMoney, jobs_money


def groups_of(user: User) -> QuerySet[JobGroup]:
    return JobGroup.objects.filter(owner=user).order_by("-created_at", "-pk")


def group_of(user: User, group_id: int) -> JobGroup:
    """The user's group; NotFound for someone else's, so others' ids reveal nothing."""
    group = JobGroup.objects.filter(owner=user, pk=group_id).first()
    if group is None:
        raise NotFound("no such job group")
    return group


def group_counts(group: JobGroup) -> dict[str, int]:
    """How many of its tasks are in each status (every status named, 0 included)."""
    counts = {str(status): 0 for status in TaskStatus}
    rows = (
        JobGroupTask.objects.filter(group=group)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts.update({str(status): int(n) for status, n in rows})
    return counts


def group_cost(group: JobGroup) -> int:
    """What its tasks' jobs were charged so far: the settled ones' (final) and the running
    ones' charges until now."""
    running = Job.objects.filter(group=group, hold_released_at__isnull=True).aggregate(
        cost=Sum("cost_micros")
    )
    return group.settled_cost_micros + int(running["cost"] or 0)


def group_tasks(group: JobGroup, *, status: str | None = None) -> QuerySet[JobGroupTask]:
    tasks = JobGroupTask.objects.filter(group=group).select_related("job").order_by("index")
    return tasks if status is None else tasks.filter(status=status)


def group_event(group_id: int) -> dict[str, Any] | None:
    """What the group's socket shows: its status, the counts by task status, the cost so far
    and the money it holds now."""
    group = JobGroup.objects.filter(pk=group_id).first()
    if group is None:
        return None
    return {
        "type": "group.progress",
        "group_id": group.pk,
        "status": str(group.status),
        "status_reason": group.status_reason,
        "count": group.count,
        "counts": group_counts(group),
        "cost_micros": group_cost(group),
        "open_tasks": group.open_tasks,
        "cancel_requested": group.cancel_requested_at is not None,
    }


class TaskResult(TypedDict):
    index: int
    job_id: int | None
    status: str
    exit_code: int | None
    reason: str
    cost_micros: int
    outputs: list[dict[str, Any]]


class ResultsPage(TypedDict):
    group_id: int
    index: int
    next_index: int
    results: list[TaskResult]
    is_complete: bool


def group_results(group: JobGroup, *, index: int, limit: int) -> ResultsPage:
    """The results of the tasks from ``index`` on, in index order, up to the first task that
    has none yet (at most ``limit``): a reader who passes ``next_index`` back gets each result
    once, in order, never skipping one that is still running. ``is_complete``: every index
    has its result and this page reaches the last."""
    tasks = list(group_tasks(group).filter(index__gte=index)[:limit])
    ready: list[JobGroupTask] = []
    for task in tasks:
        if task.index != index + len(ready) or task.status not in TASK_FINAL:
            break
        ready.append(task)
    outputs = _outputs_of([t.job_id for t in ready if t.job_id is not None])
    results = [
        TaskResult(
            index=task.index,
            job_id=task.job_id,
            status=str(task.status),
            exit_code=task.exit_code,
            reason=task.reason,
            cost_micros=task.job.cost_micros if task.job is not None else 0,
            outputs=outputs.get(task.job_id, []) if task.job_id is not None else [],
        )
        for task in ready
    ]
    next_index = index + len(results)
    return ResultsPage(
        group_id=group.pk,
        index=index,
        next_index=next_index,
        results=results,
        is_complete=next_index >= group.count,
    )


def _outputs_of(job_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each job's uploaded outputs of its latest attempt that has some (``job_outputs``'s rule),
    in one query."""
    rows = (
        JobOutput.objects.filter(job_id__in=job_ids, uploaded_at__isnull=False)
        .values_list("job_id", "attempt__number", "name", "size", "sha256")
        .order_by("job_id", "-attempt__number", "name")
    )
    latest: dict[int, int] = {}
    outputs: dict[int, list[dict[str, Any]]] = {}
    for job_id, number, name, size, sha256 in rows:
        if latest.setdefault(job_id, number) != number:
            continue
        outputs.setdefault(job_id, []).append({"name": name, "size": size, "sha256": sha256})
    return outputs


class TaskReceipt(TypedDict):
    index: int
    job_id: int
    status: str
    gross_micros: int
    fee_micros: int
    host_net_micros: int
    reversed_micros: int
    charged_micros: int
    hold_micros: int
    refund_micros: int
    held_micros: int


_SUMMED = (
    "gross_micros",
    "fee_micros",
    "host_net_micros",
    "reversed_micros",
    "charged_micros",
    "hold_micros",
    "refund_micros",
    "held_micros",
)


def _task_receipt(job: Job, money: JobMoney) -> TaskReceipt:
    """A task job's receipt totals: what ``jobs.selectors.job_receipt`` totals, from the same
    ledger figures (``ledger.selectors.job_money``)."""
    charges = money.attempts.values()
    return TaskReceipt(
        index=job.task_index or 0,
        job_id=job.pk,
        status=str(job.status),
        gross_micros=sum(a.gross_micros for a in charges),
        fee_micros=sum(a.fee_micros for a in charges),
        host_net_micros=sum(a.host_net_micros for a in charges),
        reversed_micros=sum(a.reversed_gross_micros for a in charges),
        charged_micros=sum(a.charged_micros for a in charges),
        hold_micros=money.hold_placed_micros,
        refund_micros=money.hold_released_micros,
        held_micros=money.hold_left_micros,
    )


def group_receipt(user: User, group_id: int) -> dict[str, Any]:
    """The owner's receipt of a group: one line per task job (a retried index has several),
    each its job's receipt totals, and their sums, exact: the money of all of them in one
    ledger query."""
    group = group_of(user, group_id)
    jobs = list(Job.objects.filter(group=group).order_by("task_index", "pk"))
    money = jobs_money([job.pk for job in jobs])
    tasks = [_task_receipt(job, money[job.pk]) for job in jobs]
    lines: list[dict[str, Any]] = [dict(task) for task in tasks]
    totals = {name: sum(int(line[name]) for line in lines) for name in _SUMMED}
    return {
        "group_id": group.pk,
        "status": str(group.status),
        "max_cost_micros": group.max_cost_micros,
        "is_settled": group.status != JobGroupStatus.RUNNING,
        "tasks": tasks,
        "totals": totals,
        "spent_by": user.username,
        "paid_by": paid_by(group.pool_id),
    }


def group_blobs_in_use(blob_ids: Collection[int]) -> set[int]:
    """Of these blobs, those a running group's tasks will still read (its inputs, shared or a
    task's, and its code archive): the collector keeps them (``jobs.selectors.blobs_in_use``)."""
    running = Q(group__status=JobGroupStatus.RUNNING)
    inputs = JobGroupInput.objects.filter(running, blob_id__in=blob_ids).values_list(
        "blob_id", flat=True
    )
    archives = JobGroup.objects.filter(
        status=JobGroupStatus.RUNNING, code_archive_id__in=blob_ids
    ).values_list("code_archive_id", flat=True)
    return {blob_id for blob_id in [*inputs, *archives] if blob_id is not None}
