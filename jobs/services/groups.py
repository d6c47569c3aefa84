"""A job group's life after its creation (``jobs.services.group_create``): starting its tasks as
room frees, recording their results, retries, host exclusion and cancel (docs/jobs.md, "Job
groups").

**Money.** A task's job is created, and its cap held (``jobs.billing.job_hold_place``, the
job's own hold), only when it can start: while fewer than ``max_parallel`` tasks hold, and only
if the group's settled charges + its open holds + one more task's cap stay within the group
cap. Nothing is held for the group as such, so when it ends there is no remainder to return:
each task's job returns its own unspent hold when it settles, as any job does.

**When.** A task's job settles in ``jobs.billing.job_settle`` (the one place a hold is
released), which locks the group row and then calls ``group_task_settled`` in the same
transaction: under the lock it records the result, moves the counters and starts what may
start now; two tasks settling at once queue on the row, so they never start the same index
nor pass the cap together. Lock order: a task's job row, then its group's row, then the
ledger's accounts (the settlement), then the new tasks' job rows and their holds; starting
tasks anywhere else (``group_start_batch``) takes the group row, then the new jobs and their
holds; the group's cancel takes its open tasks' job rows first, then the group row
(``group_cancel``).
"""

from __future__ import annotations

import logging
import posixpath
import threading
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, prefetch_related_objects
from django.utils import timezone

from accounts.models import User
from blobs.models import BlobHolding
from blobs.services.content import blob_content_store
from config.errors import Conflict, InsufficientCredits, PermissionDenied
from jobs import events
from jobs.billing import job_hold_place
from jobs.group_selectors import group_event, group_of
from jobs.group_states import (
    RETRYABLE,
    TASK_RESULT,
    group_transition,
    task_transition,
    tasks_skip,
)
from jobs.models import (
    TASK_ARGUMENT_PATH,
    InputSource,
    Job,
    JobFile,
    JobGroup,
    JobGroupInput,
    JobGroupStatus,
    JobGroupTask,
    JobInput,
    JobStatus,
    TaskStatus,
)
from jobs.services.audit import job_submitted_audit
from jobs.services.cancel import job_cancel
from jobs.services.dispatch import job_offer_next
from jobs.states import FINAL

logger = logging.getLogger(__name__)

CAP_REASON = "not started: one more task's cap would pass the group's cap"
WALLET_REASON = "not started: the wallet could not cover the next task's hold"
# A pool group's task: the organisation's wallet pays, within the owner's monthly cap.
MEMBER_CAP_REASON = "not started: the next task's hold would pass the owner's monthly cap"
CANCEL_REASON = "not started: the group was cancelled"


class HoldRefused(Exception):
    """A task's hold was refused (the wallet, a pool member's monthly cap, a restriction):
    nothing of the task was written."""

    def __init__(self, refusal: InsufficientCredits | PermissionDenied) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def group_locked(group_id: int) -> JobGroup:
    """The group's row, locked until the caller's transaction ends (``SELECT … FOR UPDATE``)."""
    locked = JobGroup.objects.select_for_update(of=("self",))
    return locked.select_related("owner", "code_archive").get(pk=group_id)


def group_advance(
    group: JobGroup,
    *,
    strict: bool = False,
    limit: int | None = None,
    now: datetime | None = None,
) -> int:
    """Start the group's pending tasks, lowest index first, while the cap and ``max_parallel``
    allow (at most ``limit`` of them); finish the group when nothing is left to run. How many
    started.

    ``group`` is locked by the caller (``group_locked``). A task's hold the wallet can't cover
    stops the starting (``strict``, the group's creation: the refusal is raised, so nothing of
    the group is written); when no task runs any more, the cap or the wallet ends the rest as
    ``skipped``: they would never start.
    """
    now = now or timezone.now()
    if group.status != JobGroupStatus.RUNNING or group.cancel_requested_at is not None:
        _finish_if_done(group)
        return 0
    _advancing.groups[group.pk] = 0
    try:
        started, stopped = _tasks_start(group, strict, limit, now)
    finally:
        del _advancing.groups[group.pk]
    if stopped and group.open_tasks == 0:
        tasks_skip(group, stopped)
    _finish_if_done(group)
    return started


class _Advancing(threading.local):
    """The groups this thread is starting tasks of, and how many of their tasks settled
    meanwhile: a task that ends at once (its job failed in its first placement) settles
    inside ``_task_start``, and its settlement must not start tasks itself (the loop does,
    after reading the counters again)."""

    def __init__(self) -> None:
        self.groups: dict[int, int] = {}


_advancing = _Advancing()


def _tasks_start(
    group: JobGroup, strict: bool, limit: int | None, now: datetime
) -> tuple[int, str]:
    """Start tasks while there is room; how many, and why it stopped early ("" when not)."""
    started = 0
    stopped = ""
    while group.open_tasks < group.max_parallel and (limit is None or started < limit):
        if not _room_for_one_more(group):
            stopped = CAP_REASON
            break
        task = (
            JobGroupTask.objects.filter(group=group, status=TaskStatus.PENDING)
            .order_by("index")
            .first()
        )
        if task is None:
            break
        try:
            _task_start(group, task, now)
        except HoldRefused as refused:
            if strict:
                raise refused.refusal from None
            is_cap = refused.refusal.code == "member_cap_exceeded"
            stopped = MEMBER_CAP_REASON if is_cap else WALLET_REASON
            break
        started += 1
        if _advancing.groups[group.pk]:  # a task ended at once: it moved the counters
            group.refresh_from_db(fields=["open_tasks", "settled_cost_micros"])
            _advancing.groups[group.pk] = 0
    return started, stopped


def group_may_start_more(group: JobGroup) -> bool:
    """Whether the group has room for another task now and a task waiting for it."""
    return (
        group.status == JobGroupStatus.RUNNING
        and group.cancel_requested_at is None
        and group.open_tasks < group.max_parallel
        and _room_for_one_more(group)
        and JobGroupTask.objects.filter(group=group, status=TaskStatus.PENDING).exists()
    )


def group_start_batch(group_id: int) -> int:
    """Start up to ``JOB_GROUP_START_BATCH`` tasks the group has room for, under its row lock,
    in the caller's transaction (the background task's, the reaper's: one per batch). How
    many started; a group that ended or has no room changes nothing."""
    return group_advance(group_locked(group_id), limit=settings.JOB_GROUP_START_BATCH)


def groups_startable() -> list[int]:
    """Running groups with room for a task and one waiting (the reaper's net under the
    background start, which a lost worker may not have finished), a batch of them."""
    pending = JobGroupTask.objects.filter(group=OuterRef("pk"), status=TaskStatus.PENDING)
    rows = JobGroup.objects.filter(
        status=JobGroupStatus.RUNNING,
        cancel_requested_at__isnull=True,
        open_tasks__lt=F("max_parallel"),
    ).filter(Exists(pending))
    return list(rows.order_by("pk").values_list("pk", flat=True)[:100])


def _room_for_one_more(group: JobGroup) -> bool:
    """Charges so far (settled tasks) + open holds + one more task's cap within the cap."""
    committed = group.settled_cost_micros + (group.open_tasks + 1) * group.task_max_cost_micros
    return committed <= group.max_cost_micros


def _task_start(group: JobGroup, task: JobGroupTask, now: datetime) -> Job:
    """The task's job, its files and inputs, its hold and its first offer (after commit), in a
    savepoint: a refused hold undoes all of it (``HoldRefused``)."""
    try:
        with transaction.atomic():
            job = _task_job_create(group, task)
            job_hold_place(job)
            task_transition(task, TaskStatus.RUNNING, "", job=job)
            JobGroup.objects.filter(pk=group.pk).update(open_tasks=F("open_tasks") + 1)
            group.open_tasks += 1
            job_offer_next(job.pk, now=now)  # may end it at once: nobody can ever take it
    except (InsufficientCredits, PermissionDenied) as exc:
        raise HoldRefused(exc) from None
    return job


def _task_job_create(group: JobGroup, task: JobGroupTask) -> Job:
    """An ordinary job made of the group's template, for one index; its inputs are the
    template's, the task's own and its argument as ``task.json`` (a blob the server writes:
    ``blob_content_store``)."""
    rows = list(
        JobGroupInput.objects.filter(group=group)
        .filter(Q(task_index__isnull=True) | Q(task_index=task.index))
        .select_related("blob")
        .order_by("pk")
    )
    inputs = [
        JobInput(
            path=row.path,
            sha256=row.sha256,
            size=row.size,
            source=row.source,
            url=row.url,
            blob=row.blob,
        )
        for row in rows
    ]
    if task.argument:
        blob = blob_content_store(task.argument.encode())
        inputs.append(
            JobInput(
                path=TASK_ARGUMENT_PATH,
                sha256=blob.sha256,
                size=blob.size,
                source=InputSource.STORE,
                blob=blob,
            )
        )
    held = {row.blob_id for row in rows if row.blob_id is not None}
    if held:
        BlobHolding.objects.filter(user_id=group.owner_id, blob_id__in=held).update(
            last_used_at=timezone.now()
        )
    archive = group.code_archive.size if group.code_archive is not None else 0
    prefetch_related_objects([group], "files")  # once per advance: every task copies them
    job = Job.objects.create(
        owner_id=group.owner_id,
        group=group,
        task_index=task.index,
        placement=group.placement,
        requested_host_id=group.requested_host_id,
        status=JobStatus.QUEUED,
        status_reason="waiting for a host",
        # A task's lost and faulted attempts count together: host_fault_retries of them may
        # run it again elsewhere (jobs.services.dispatch._after_loss).
        max_attempts=group.host_fault_retries + 1,
        entrypoint=group.entrypoint,
        name=_task_name(group, task.index),
        requirements=group.requirements,
        cpus=group.cpus,
        memory_mb=group.memory_mb,
        gpus=group.gpus,
        timeout_seconds=group.timeout_seconds,
        max_cost_micros=group.task_max_cost_micros,
        work_mb=group.work_mb,
        outputs_mb=group.outputs_mb,
        tmp_mb=group.tmp_mb,
        work_exec=group.work_exec,
        inputs_bytes=sum(i.size or 0 for i in inputs) + archive,
        code_archive=group.code_archive,
        code_archive_sha256=group.code_archive_sha256,
        pool_id=group.pool_id,
    )
    files = list(group.files.all())
    JobFile.objects.bulk_create(
        JobFile(job=job, path=f.path, content=f.content, size=f.size) for f in files
    )
    for row in inputs:
        row.job = job
    JobInput.objects.bulk_create(inputs)
    job_submitted_audit(job, ((f.path, bytes(f.content)) for f in files))
    return job


def _task_name(group: JobGroup, index: int) -> str:
    suffix = f" #{index}"
    base = group.name or posixpath.basename(group.entrypoint)
    return base[: 200 - len(suffix)] + suffix


def group_task_settled(job_id: int) -> None:
    """The job of a group's task settled (``jobs.billing.job_settle``, in its transaction, once
    per job): record the task's result, or queue its error retry; move the group's counters;
    start what may start now; finish the group when nothing is left.

    Locks the group row (``job_settle`` locked it already, after the job's row and before the
    ledger's accounts). Tells the group's socket after commit.
    """
    job = Job.objects.get(pk=job_id)
    assert job.group_id is not None
    assert job.task_index is not None
    group = group_locked(job.group_id)
    JobGroup.objects.filter(pk=group.pk).update(
        open_tasks=F("open_tasks") - 1,
        settled_cost_micros=F("settled_cost_micros") + job.cost_micros,
    )
    group.open_tasks -= 1
    group.settled_cost_micros += job.cost_micros
    task = JobGroupTask.objects.get(group=group, index=job.task_index)
    if task.job_id == job.pk and task.status == TaskStatus.RUNNING:
        _task_result(group, task, job)
    else:  # not the task's current job (never expected): its money counted, its result not
        logger.warning(
            "group %s: job %s settled, but task %s runs job %s",
            group.pk,
            job.pk,
            task.index,
            task.job_id,
        )
    if group.pk in _advancing.groups:
        _advancing.groups[group.pk] += 1
    else:
        group_advance(group)
    transaction.on_commit(lambda: _push(group.pk))


def _push(group_id: int) -> None:
    """After commit: the group's progress to its socket (a doorbell; dropped pushes are
    caught up over HTTP)."""
    event = group_event(group_id)
    if event is not None:
        events.group_event_push(group_id, event)


def _task_result(group: JobGroup, task: JobGroupTask, job: Job) -> None:
    status = JobStatus(job.status)
    if (
        status in RETRYABLE
        and task.error_tries < group.error_retries
        and group.cancel_requested_at is None
    ):
        tries = task.error_tries + 1
        task_transition(
            task,
            TaskStatus.PENDING,
            f"job {job.pk} {status} ({job.status_reason}); retry {tries} of {group.error_retries}",
            error_tries=tries,
        )
        return
    task_transition(task, TASK_RESULT[status], job.status_reason, exit_code=job.exit_code)


def _finish_if_done(group: JobGroup) -> None:
    """End the group once no task runs and none is left to start: ``cancelled`` when it was
    cancelled, else ``finished``, saying how its tasks ended."""
    if group.status != JobGroupStatus.RUNNING or group.open_tasks > 0:
        return
    counts = dict(
        JobGroupTask.objects.filter(group=group)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    if counts.get(TaskStatus.PENDING, 0) or counts.get(TaskStatus.RUNNING, 0):
        return
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    target = JobGroupStatus.CANCELLED if group.cancel_requested_at else JobGroupStatus.FINISHED
    group_transition(group, target, f"{group.count} tasks: {summary}")
    transaction.on_commit(lambda: _push(group.pk))


def group_cancel(*, user: User, group_id: int) -> JobGroup:
    """Cancel the user's group: no task starts any more (the pending ones end ``skipped``) and
    each running task's job is cancelled (``jobs.services.cancel.job_cancel``: at once while
    no host holds it, else through the agent). The group ends ``cancelled`` when its last
    running task has ended. Repeating it changes nothing more; a group that ended: 409.

    Locks the open tasks' job rows (pk order), then the group row: the order of a settlement,
    which holds a task's job row when it takes the group's. Runs in the caller's transaction
    (the view's, ``durable``).
    """
    group = group_of(user, group_id)
    if group.status != JobGroupStatus.RUNNING:
        raise Conflict("the job group has already ended", code="group_finished")
    open_jobs = Job.objects.filter(group=group).exclude(status__in=FINAL)
    list(open_jobs.select_for_update().order_by("pk").values_list("pk", flat=True))
    group = group_locked(group.pk)
    if group.status != JobGroupStatus.RUNNING:
        raise Conflict("the job group has already ended", code="group_finished")
    if group.cancel_requested_at is None:
        now = timezone.now()
        JobGroup.objects.filter(pk=group.pk).update(cancel_requested_at=now)
        group.cancel_requested_at = now
    tasks_skip(group, CANCEL_REASON)
    for job_id in open_jobs.order_by("pk").values_list("pk", flat=True):
        try:
            job_cancel(user=user, job_id=job_id)
        except Conflict:  # it finished meanwhile: its settlement counted it
            continue
    group.refresh_from_db()
    _finish_if_done(group)
    transaction.on_commit(lambda: _push(group.pk))
    return group
