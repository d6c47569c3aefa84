"""Creating a job group (``POST /api/v1/job-groups/``, docs/jobs.md "Job groups"): every check
first, every bad field named at once; then the group, its tasks and its first tasks' jobs (with
their holds and offers) in the caller's one transaction, or nothing at all.

The template is checked exactly as a submit is (``jobs.services.submit.job_submission_check``:
files, requirements, limits, the shared inputs, placement, the cap against the host's rates),
with the fields named as the group calls them (``shared_inputs``, ``task_max_cost_micros``); the
tasks' own inputs as a submit's inputs are (``jobs.inputs.inputs_check``, the holdings), each
named ``inputs[i].inputs[j]…``; the offer's size and the disk with the task that adds most.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TypeVar

from django.conf import settings
from django.db import transaction

from accounts.models import User
from blobs.models import BlobHolding
from blobs.selectors import blobs_held
from config.errors import InsufficientCredits, ServiceError, TooLarge, ValidationFailed
from jobs.billing import hold_payer_available
from jobs.inputs import InputSpec, PoolFetchRules, inputs_check, pool_fetch_rules
from jobs.models import (
    TASK_ARGUMENT_PATH,
    InputSource,
    JobGroup,
    JobGroupFile,
    JobGroupInput,
    JobGroupTask,
    JobInput,
    PlacementMode,
)
from jobs.services.groups import group_advance, group_may_start_more
from jobs.services.submit import SubmissionChecked, holdings_touch, job_submission_check
from jobs.validation import JobSubmission, refusals_merge

_T = TypeVar("_T")
_E = TypeVar("_E", bound=ServiceError)


@dataclass(frozen=True)
class TaskRequest:
    """One task as the API parsed it: its argument as JSON text (None: none) and its own
    input files (checked here like a submit's ``inputs``)."""

    argument: str | None = None
    inputs: tuple[object, ...] = ()


@dataclass(frozen=True)
class GroupRequest:
    """A group as the API parsed it. ``template`` is the job every task is: its
    ``max_cost_micros`` is the task cap, its ``inputs`` the shared inputs."""

    template: JobSubmission
    tasks: tuple[TaskRequest, ...]
    max_parallel: int
    max_cost_micros: int  # the group cap
    host_fault_retries: int
    error_retries: int


@dataclass
class _Tasks:
    """The tasks' own inputs, checked: unsaved rows per index, and the holdings they use."""

    rows: list[list[JobGroupInput]] = field(default_factory=list)
    holdings: list[BlobHolding] = field(default_factory=list)

    def heaviest(self, arguments: Sequence[str | None]) -> tuple[list[JobInput], int]:
        """What one task adds at most: the inputs of the task with the most (the offer's
        size), and the most bytes (the disk)."""
        if not self.rows:
            return [], 0
        most = max(range(len(self.rows)), key=lambda i: len(self.rows[i]))
        extra = [_job_input(row) for row in self.rows[most]]
        if any(arguments):
            extra.append(JobInput(path=TASK_ARGUMENT_PATH, sha256="0" * 64, source="store"))
        sizes = [
            sum(row.size or 0 for row in rows) + len((arguments[i] or "").encode())
            for i, rows in enumerate(self.rows)
        ]
        return extra, max(sizes)


def group_create(*, owner: User, request: GroupRequest) -> JobGroup:
    """Check everything, then create the group, its tasks, and start the first of them (each
    an ordinary job with its own hold and offer, ``jobs.services.groups.group_advance``).

    Moves money: the first ``JOB_GROUP_START_BATCH`` tasks' holds, in the caller's transaction
    (the view's, ``durable``); the wallet must cover the holds of all the tasks that may start
    at once (``min(max_parallel, count, what the cap allows)``), else 402 and nothing is
    written. The rest of those start after the commit (``jobs.tasks.group_start``). Locks the
    holdings it uses (as a submit does), then writes.
    """
    refusals: list[ValidationFailed] = []
    arguments = [task.argument for task in request.tasks]
    tasks = _attempt(refusals, lambda: _tasks_check(owner, request))
    extra, extra_bytes = (tasks or _Tasks()).heaviest(arguments)
    accepted = _attempt(refusals, lambda: _template_check(owner, request, extra, extra_bytes))
    _attempt(refusals, lambda: _caps_check(request))
    if refusals:
        raise refusals_merge(refusals)
    assert tasks is not None
    assert accepted is not None
    _inputs_bytes_check(accepted, extra_bytes)
    _wallet_check(owner, request)
    with transaction.atomic(savepoint=False):  # the caller's transaction, else its own
        holdings_touch([*accepted.checked.holdings, *tasks.holdings])
        group = _group_write(owner, request, accepted, tasks)
        group_advance(group, strict=True, limit=settings.JOB_GROUP_START_BATCH)
        if group_may_start_more(group):
            # The rest of the first tasks start after the commit, a batch per transaction
            # (``jobs.tasks.group_start``; the reaper's pass if that task is lost).
            from jobs.tasks import group_start  # the entry points import the services

            group_start.delay_on_commit(group.pk)
    group.refresh_from_db()
    return group


def _attempt(refusals: list[ValidationFailed], check: Callable[[], _T]) -> _T | None:
    """Run one check; a 400 joins the others (None), a 413, 402, 409 goes up at once."""
    try:
        return check()
    except ValidationFailed as exc:
        refusals.append(exc)
        return None


def _template_check(
    owner: User, request: GroupRequest, extra: list[JobInput], extra_bytes: int
) -> SubmissionChecked:
    """The submit's checks of the template, its fields named as the group names them."""
    try:
        return job_submission_check(
            owner=owner,
            submission=request.template,
            extra_inputs=extra,
            extra_inputs_bytes=extra_bytes,
        )
    except ServiceError as exc:
        raise _renamed(exc, _template_name, _template_text) from None


def _template_name(name: str) -> str:
    """A submit's field name as the group's: its inputs are the shared inputs, its cap the
    task cap."""
    name = re.sub(r"^inputs(?=$|\[)", "shared_inputs", name)
    return re.sub(r"^max_cost_micros$", "task_max_cost_micros", name)


def _template_text(text: str) -> str:
    text = re.sub(r"\binputs(?=\[|\.| )", "shared_inputs", text)
    return re.sub(r"\bmax_cost_micros\b", "task_max_cost_micros", text)


def _renamed(exc: _E, name_of: Callable[[str], str], text_of: Callable[[str], str]) -> _E:
    """``exc`` (of the same class and code) with its fields and its message renamed."""
    fields: dict[str, list[str]] = {}
    for name, messages in exc.fields.items():
        fields.setdefault(name_of(name), []).extend(messages)
    return type(exc)(text_of(exc.message), code=exc.code, fields=fields)


def _task_renamed(exc: ValidationFailed, index: int) -> ValidationFailed:
    """An ``inputs_check`` refusal of task ``index``'s own inputs: ``inputs[j]`` is
    ``inputs[index].inputs[j]``."""
    prefix = f"inputs[{index}].inputs"
    return _renamed(
        exc,
        lambda name: re.sub(r"^inputs", prefix, name),
        lambda text: re.sub(r"\binputs(?=\[| )", prefix, text),
    )


def _tasks_check(owner: User, request: GroupRequest) -> _Tasks:
    """Each task's own inputs: a submit's rules (``inputs_check``), no clash with the shared
    inputs or ``task.json``, the owner holds every store blob, the count and byte caps with
    the shared ones. Every bad one named."""
    pool = pool_fetch_rules(owner.pk, request.template.pool_id)
    shared = _shared_paths(request.template.inputs, pool)
    refusals: list[ValidationFailed] = []
    specs: list[list[InputSpec]] = []
    for index, task in enumerate(request.tasks):
        try:
            found = inputs_check(task.inputs, pool)
        except ValidationFailed as exc:
            refusals.append(_task_renamed(exc, index))
            found = []
        refusals.extend(_clashes(index, found, shared, has_argument=task.argument is not None))
        specs.append(found)
    digests = {spec.sha256 for found in specs for spec in found if spec.url is None}
    held = blobs_held(owner, digests)
    rows: list[list[JobGroupInput]] = []
    for index, found in enumerate(specs):
        for j, spec in enumerate(found):
            if spec.url is None and spec.sha256 not in held:
                where = f"inputs[{index}].inputs[{j}].sha256"
                refusals.append(
                    ValidationFailed(
                        f"{where}: you hold no blob with this sha256",
                        code="unknown_blob",
                        fields={where: ["you hold no blob with this sha256: upload it first"]},
                    )
                )
    if refusals:
        raise refusals_merge(refusals)
    for index, found in enumerate(specs):
        rows.append([_group_input(index, spec, held.get(spec.sha256)) for spec in found])
    holdings = list({held[d].pk: held[d] for d in digests}.values())
    return _Tasks(rows=rows, holdings=holdings)


@dataclass(frozen=True)
class _SharedPaths:
    files: frozenset[str]
    folders: frozenset[str]
    count: int


def _shared_paths(raw: tuple[object, ...], pool: PoolFetchRules | None) -> _SharedPaths:
    """The shared inputs' files and the folders they make (their errors are the template
    check's to name)."""
    try:
        found = inputs_check(raw, pool)
    except ServiceError:
        return _SharedPaths(frozenset(), frozenset(), len(raw))
    files = frozenset(spec.path for spec in found)
    folders = frozenset(str(p) for path in files for p in PurePosixPath(path).parents)
    return _SharedPaths(files, folders - {"."}, len(found))


def _clashes(
    index: int, found: list[InputSpec], shared: _SharedPaths, *, has_argument: bool
) -> list[ValidationFailed]:
    """A task's input may not be a shared input's path, nor a folder of one, nor inside one;
    ``task.json`` is the argument's."""
    refusals = []
    for j, spec in enumerate(found):
        where = f"inputs[{index}].inputs[{j}].path"
        parents = {str(p) for p in PurePosixPath(spec.path).parents}
        if spec.path == TASK_ARGUMENT_PATH or TASK_ARGUMENT_PATH in parents:
            why, code = f"{TASK_ARGUMENT_PATH} is the task's argument", "invalid_path"
        elif spec.path in shared.files:
            why, code = f"{spec.path} is a shared input too", "duplicate_path"
        elif spec.path in shared.folders or parents & shared.files:
            why, code = "clashes with a shared input's path", "invalid_path"
        else:
            continue
        refusals.append(ValidationFailed(f"{where}: {why}", code=code, fields={where: [why]}))
    if shared.count + len(found) + int(has_argument) > settings.JOB_INPUTS_MAX_COUNT:
        where = f"inputs[{index}].inputs"
        why = f"with the shared inputs and task.json, at most {settings.JOB_INPUTS_MAX_COUNT}"
        refusals.append(ValidationFailed(why, code="too_many_inputs", fields={where: [why]}))
    return refusals


def _group_input(index: int | None, spec: InputSpec, holding: BlobHolding | None) -> JobGroupInput:
    if spec.url is not None:
        return JobGroupInput(
            task_index=index,
            path=spec.path,
            sha256=spec.sha256,
            size=spec.size,
            source=InputSource.URL,
            url=spec.url,
        )
    assert holding is not None
    return JobGroupInput(
        task_index=index,
        path=spec.path,
        sha256=spec.sha256,
        size=holding.blob.size,
        source=InputSource.STORE,
        blob=holding.blob,
    )


def _job_input(row: JobGroupInput) -> JobInput:
    return JobInput(
        path=row.path,
        sha256=row.sha256,
        size=row.size,
        source=row.source,
        url=row.url,
        blob=row.blob,
    )


def _inputs_bytes_check(accepted: SubmissionChecked, extra_bytes: int) -> None:
    """The shared inputs, the code archive and the task that adds most within
    JOB_INPUTS_MAX_BYTES, as a submit's inputs (413)."""
    total = accepted.checked.inputs_bytes + extra_bytes
    if total > settings.JOB_INPUTS_MAX_BYTES:
        raise TooLarge(
            f"a task's inputs add up to {total} bytes with the shared ones, more than "
            f"{settings.JOB_INPUTS_MAX_BYTES}",
            code="inputs_too_large",
            fields={"inputs": [f"more than {settings.JOB_INPUTS_MAX_BYTES} bytes in one task"]},
        )


def _caps_check(request: GroupRequest) -> None:
    """The group cap must let one task start."""
    task_cap = request.template.max_cost_micros
    if request.max_cost_micros < task_cap:
        raise ValidationFailed(
            f"the group's max_cost_micros ({request.max_cost_micros}) must cover at least one "
            f"task's task_max_cost_micros ({task_cap})",
            code="cap_too_low",
            fields={"max_cost_micros": [f"at least task_max_cost_micros ({task_cap})"]},
        )


def first_wave(request: GroupRequest) -> int:
    """How many tasks start at once: max_parallel, the count and the cap allow that many."""
    by_cap = request.max_cost_micros // request.template.max_cost_micros
    return min(request.max_parallel, len(request.tasks), by_cap)


def _wallet_check(owner: User, request: GroupRequest) -> None:
    """The wallet covers the first tasks' holds (402 naming both amounts, nothing written):
    the owner's, or a pool group's organisation's (``jobs.billing.hold_payer_available``)."""
    required = first_wave(request) * request.template.max_cost_micros
    pool_id = request.template.pool_id
    available = hold_payer_available(owner, pool_id)
    if available < required:
        wallet = "" if pool_id is None else f" in the wallet of organisation {pool_id}"
        raise InsufficientCredits(
            f"the first {first_wave(request)} tasks' holds need {required} micro-credits; "
            f"{available} are available{wallet}",
            fields={
                "available_micros": available,
                "required_micros": required,
                **({} if pool_id is None else {"wallet": [f"organisation {pool_id}"]}),
            },
        )


def _group_write(
    owner: User, request: GroupRequest, accepted: SubmissionChecked, tasks: _Tasks
) -> JobGroup:
    template, checked, spec = request.template, accepted.checked, accepted.spec
    archive = checked.archive.blob if checked.archive is not None else None
    group = JobGroup.objects.create(
        owner=owner,
        name=template.name or posixpath.basename(checked.entrypoint),
        count=len(request.tasks),
        max_parallel=request.max_parallel,
        max_cost_micros=request.max_cost_micros,
        task_max_cost_micros=template.max_cost_micros,
        host_fault_retries=request.host_fault_retries,
        error_retries=request.error_retries,
        placement=PlacementMode.AUTO if template.host_id is None else PlacementMode.CHOSEN,
        requested_host_id=template.host_id,
        entrypoint=checked.entrypoint,
        requirements=checked.requirements,
        cpus=spec.cpus,
        memory_mb=spec.memory_mb,
        gpus=spec.gpus,
        timeout_seconds=spec.timeout_seconds,
        work_mb=checked.disk.work_mb,
        outputs_mb=checked.disk.outputs_mb,
        tmp_mb=checked.disk.tmp_mb,
        work_exec=template.work_exec,
        code_archive=archive,
        code_archive_sha256=archive.sha256 if archive is not None else "",
        pool_id=template.pool_id,
    )
    JobGroupFile.objects.bulk_create(
        JobGroupFile(group=group, path=f.path, content=f.content, size=len(f.content))
        for f in checked.files
    )
    shared = [
        JobGroupInput(
            group=group,
            path=row.path,
            sha256=row.sha256,
            size=row.size,
            source=row.source,
            url=row.url,
            blob=row.blob,
        )
        for row in checked.inputs
    ]
    own = [row for rows in tasks.rows for row in rows]
    for row in own:
        row.group = group
    JobGroupInput.objects.bulk_create([*shared, *own], batch_size=1000)
    JobGroupTask.objects.bulk_create(
        (
            JobGroupTask(group=group, index=index, argument=task.argument or "")
            for index, task in enumerate(request.tasks)
        ),
        batch_size=1000,
    )
    return group
