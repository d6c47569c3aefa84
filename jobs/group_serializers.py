"""Request and response shapes of the job groups API (docs/jobs.md, "Job groups")."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api import MicrosField
from jobs.group_selectors import group_cost, group_counts
from jobs.models import JobGroup, JobGroupTask, TaskStatus
from jobs.serializers import _INPUT_SCHEMA, InputsField, JobCreateSerializer, PaidByOutput
from jobs.services.group_create import GroupRequest, TaskRequest

_TASK_KEYS = {"argument", "inputs"}


@extend_schema_field(
    {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "argument": {"description": "any JSON: the task reads it at /inputs/task.json"},
                "inputs": {"type": "array", "items": _INPUT_SCHEMA},
            },
            "additionalProperties": False,
        },
    }
)
class TaskInputsField(serializers.Field[tuple[object, ...], Any, list[Any], Any]):
    """One object per task, ``{argument?, inputs?}`` (or that list as a JSON string, for
    multipart forms); each item is checked by ``tasks_parse``, which names ``inputs[i]…``."""

    def to_internal_value(self, data: Any) -> tuple[object, ...]:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise serializers.ValidationError("not valid JSON") from None
        if not isinstance(data, list):
            raise serializers.ValidationError("a list of {argument, inputs}, one per task")
        if not 1 <= len(data) <= settings.JOB_GROUP_MAX_TASKS:
            raise serializers.ValidationError(
                f"1 to {settings.JOB_GROUP_MAX_TASKS} tasks (JOB_GROUP_MAX_TASKS)"
            )
        return tuple(data)

    def to_representation(self, value: Any) -> list[Any]:
        return list(value)


def tasks_parse(raw: tuple[object, ...]) -> tuple[tuple[TaskRequest, ...], dict[str, list[str]]]:
    """The tasks of ``inputs``: each an object with ``argument`` (any JSON, at most
    JOB_GROUP_ARGUMENT_MAX_BYTES once written as JSON) and/or ``inputs`` (a list, checked by
    the service like a submit's inputs). The problems, by field (``inputs[3].argument``)."""
    tasks: list[TaskRequest] = []
    problems: dict[str, list[str]] = {}
    for index, item in enumerate(raw):
        where = f"inputs[{index}]"
        if not isinstance(item, Mapping):
            problems[where] = ["must be an object {argument, inputs}"]
            continue
        unknown = sorted(str(key) for key in item if key not in _TASK_KEYS)
        if unknown:
            problems[where] = [f"has unknown keys {unknown}: give argument and/or inputs"]
            continue
        argument = None
        if "argument" in item:
            argument = json.dumps(
                item["argument"], ensure_ascii=False, separators=(",", ":"), allow_nan=False
            )
            if len(argument.encode()) > settings.JOB_GROUP_ARGUMENT_MAX_BYTES:
                problems[f"{where}.argument"] = [
                    f"at most {settings.JOB_GROUP_ARGUMENT_MAX_BYTES} bytes as JSON: put bigger "
                    "data in an input"
                ]
        files = item.get("inputs", [])
        if not isinstance(files, list):
            problems[f"{where}.inputs"] = ["a list of {path, sha256} or {path, url, sha256}"]
            files = []
        tasks.append(TaskRequest(argument=argument, inputs=tuple(files)))
    return tuple(tasks), problems


class JobGroupCreateSerializer(JobCreateSerializer):
    """The job fields (the template every task is, as ``POST /api/v1/jobs/`` takes them) and
    the group's: ``inputs`` or ``count``, ``max_parallel``, the caps and the retries."""

    inputs = TaskInputsField(  # type: ignore[assignment]  # the group's inputs are its tasks
        required=False,
        help_text="one object per task: its argument (/inputs/task.json) and its own input "
        "files; or give count",
    )
    shared_inputs = InputsField(
        required=False, default=tuple, help_text="input files every task reads (as a job's)"
    )
    count = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=settings.JOB_GROUP_MAX_TASKS,
        help_text="this many tasks, indexed from 0, without arguments; or give inputs",
    )
    max_parallel = serializers.IntegerField(
        min_value=1,
        max_value=settings.JOB_GROUP_MAX_PARALLEL,
        default=10,
        help_text="at most this many tasks hold their cap (queued or running) at once",
    )
    max_cost_micros = MicrosField(
        min_value=1, help_text="the group cap: what all its tasks together may cost"
    )
    task_max_cost_micros = MicrosField(
        min_value=1, help_text="each task's cap (its job's max_cost_micros)"
    )
    host_fault_retries = serializers.IntegerField(
        min_value=0,
        max_value=settings.JOB_GROUP_MAX_RETRIES,
        default=3,
        help_text="how often a task a host lost or faulted runs again (on another host)",
    )
    error_retries = serializers.IntegerField(
        min_value=0,
        max_value=settings.JOB_GROUP_MAX_RETRIES,
        default=0,
        help_text="how often a task whose script failed or timed out runs again",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Every bad field at once (docs/api.md, Errors): the job's fields and rules (the
        # parent's), the group's rule across fields, and each task's own problems.
        problems: dict[str, Any] = {}
        attrs: dict[str, Any] = {}
        try:
            attrs = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            problems.update(exc.detail if isinstance(exc.detail, dict) else {})
        given = data if hasattr(data, "get") else {}
        if ("count" in given) == ("inputs" in given):
            problems.setdefault("count", ["give exactly one of count or inputs"])
        tasks: tuple[TaskRequest, ...] = ()
        raw = self._tasks_given(attrs, given, problems)
        if raw is not None:
            tasks, task_problems = tasks_parse(raw)
            problems.update(task_problems)
        elif "count" in attrs:
            tasks = tuple(TaskRequest() for _ in range(attrs["count"]))
        if problems:
            raise serializers.ValidationError(problems)
        attrs["tasks"] = tasks
        return attrs

    def _tasks_given(
        self, attrs: dict[str, Any], given: Any, problems: dict[str, Any]
    ) -> tuple[object, ...] | None:
        """The tasks as sent, also when other fields are bad (their problems are named
        together), unless ``inputs`` itself is."""
        if "inputs" in attrs:
            return tuple(attrs["inputs"])
        if "inputs" not in given or "inputs" in problems:
            return None
        try:
            return self.fields["inputs"].to_internal_value(given["inputs"])  # type: ignore[no-any-return]
        except serializers.ValidationError:
            return None

    def group_request(self) -> GroupRequest:
        data = self.validated_data
        template = dataclasses.replace(
            self.submission(),
            max_cost_micros=data["task_max_cost_micros"],
            inputs=data["shared_inputs"],
        )
        return GroupRequest(
            template=template,
            tasks=data["tasks"],
            max_parallel=data["max_parallel"],
            max_cost_micros=data["max_cost_micros"],
            host_fault_retries=data["host_fault_retries"],
            error_retries=data["error_retries"],
        )


class GroupTaskSerializer(serializers.ModelSerializer[JobGroupTask]):
    job_id = serializers.IntegerField(allow_null=True, read_only=True)
    job_status = serializers.SerializerMethodField(
        help_text="the status of the task's job now (queued, running …); null before it starts"
    )

    class Meta:
        model = JobGroupTask
        fields = ["index", "job_id", "status", "job_status", "exit_code", "reason"]
        read_only_fields = fields

    def get_job_status(self, task: JobGroupTask) -> str | None:
        return str(task.job.status) if task.job is not None else None


class TaskCountsSerializer(serializers.Serializer[dict[str, int]]):
    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    timed_out = serializers.IntegerField()
    budget_exhausted = serializers.IntegerField()
    skipped = serializers.IntegerField()


class JobGroupSerializer(serializers.ModelSerializer[JobGroup]):
    cpus = serializers.DecimalField(max_digits=6, decimal_places=2, coerce_to_string=False)
    counts = serializers.SerializerMethodField(help_text="its tasks by status")
    cost_micros = serializers.SerializerMethodField(
        help_text="what its tasks were charged so far (settled and running)"
    )
    cancel_requested = serializers.SerializerMethodField()

    class Meta:
        model = JobGroup
        fields = [
            "id",
            "name",
            "status",
            "status_reason",
            "count",
            "counts",
            "max_parallel",
            "open_tasks",
            "max_cost_micros",
            "task_max_cost_micros",
            "cost_micros",
            "host_fault_retries",
            "error_retries",
            "placement",
            "requested_host",
            "entrypoint",
            "requirements",
            "cpus",
            "memory_mb",
            "gpus",
            "timeout_seconds",
            "cancel_requested",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(TaskCountsSerializer)
    def get_counts(self, group: JobGroup) -> dict[str, int]:
        return group_counts(group)

    def get_cost_micros(self, group: JobGroup) -> int:
        return group_cost(group)

    def get_cancel_requested(self, group: JobGroup) -> bool:
        return group.cancel_requested_at is not None


class TaskPageSerializer(serializers.Serializer[object]):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = GroupTaskSerializer(many=True)


class JobGroupDetailSerializer(JobGroupSerializer):
    tasks = serializers.SerializerMethodField(
        help_text="its tasks in index order, a page of them (?page=, ?page_size=, ?status=)"
    )

    class Meta(JobGroupSerializer.Meta):
        fields = [*JobGroupSerializer.Meta.fields, "tasks"]
        read_only_fields = fields

    @extend_schema_field(TaskPageSerializer)
    def get_tasks(self, group: JobGroup) -> dict[str, Any]:
        page: dict[str, Any] = self.context["tasks"]
        return page


class TaskOutputSerializer(serializers.Serializer[object]):
    name = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class TaskResultSerializer(serializers.Serializer[object]):
    index = serializers.IntegerField()
    job_id = serializers.IntegerField(allow_null=True, help_text="null: it never started")
    status = serializers.CharField()
    exit_code = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_blank=True, help_text="how it ended (its error)")
    cost_micros = serializers.IntegerField()
    outputs = TaskOutputSerializer(many=True)


class ResultsPageSerializer(serializers.Serializer[object]):
    group_id = serializers.IntegerField()
    index = serializers.IntegerField(help_text="the first index of this page")
    next_index = serializers.IntegerField(help_text="pass this as ?index= to read on")
    results = TaskResultSerializer(many=True)
    is_complete = serializers.BooleanField(help_text="every task has its result, all read")


class ResultsQuerySerializer(serializers.Serializer[object]):
    index = serializers.IntegerField(min_value=0, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)


class TaskQuerySerializer(serializers.Serializer[object]):
    status = serializers.ChoiceField(choices=TaskStatus.choices, required=False)


class TaskReceiptSerializer(serializers.Serializer[object]):
    index = serializers.IntegerField()
    job_id = serializers.IntegerField()
    status = serializers.CharField()
    gross_micros = serializers.IntegerField()
    fee_micros = serializers.IntegerField()
    host_net_micros = serializers.IntegerField()
    reversed_micros = serializers.IntegerField()
    charged_micros = serializers.IntegerField(help_text="what you pay for this job")
    hold_micros = serializers.IntegerField()
    refund_micros = serializers.IntegerField()
    held_micros = serializers.IntegerField()


class GroupReceiptTotalsSerializer(serializers.Serializer[object]):
    gross_micros = serializers.IntegerField()
    fee_micros = serializers.IntegerField()
    host_net_micros = serializers.IntegerField()
    reversed_micros = serializers.IntegerField()
    charged_micros = serializers.IntegerField()
    hold_micros = serializers.IntegerField()
    refund_micros = serializers.IntegerField()
    held_micros = serializers.IntegerField()


class GroupReceiptSerializer(serializers.Serializer[object]):
    group_id = serializers.IntegerField()
    status = serializers.CharField()
    max_cost_micros = serializers.IntegerField()
    is_settled = serializers.BooleanField(help_text="every task's job settled")
    tasks = TaskReceiptSerializer(
        many=True, help_text="each job's receipt totals (a retried index has several)"
    )
    totals = GroupReceiptTotalsSerializer(help_text="the sums of the tasks' lines, exactly")
    spent_by = serializers.CharField(help_text="the owner's username: who spent")
    paid_by = PaidByOutput(
        help_text="the owner's wallet, or for a pool group the organisation's (docs/pools.md)"
    )
