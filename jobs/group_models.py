"""Job groups (docs/jobs.md, "Job groups"): one job template run over many inputs or indices.

A ``JobGroup`` is the template (the fields a submit takes), its tasks (``JobGroupTask``, one
per index, with its argument and its own input files) and the money rules: at most
``max_parallel`` tasks hold their cap at once, and a task starts only while the group's
settled charges plus its open holds plus one more task's cap stay within the group cap
(``max_cost_micros``). Each task runs as an ordinary ``Job`` (``Job.group``, ``Job.task_index``);
a retried index gets a new job. The group's counters move under its row lock only
(``jobs.services.groups``), and the database refuses a counter that would pass the cap.

Imported by ``jobs.models`` (the app's model module), so these are models of the jobs app.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from jobs.models import JOB_NAME_MAX_LENGTH, InputSource, PlacementMode

TASK_ARGUMENT_PATH = "task.json"  # where a task reads its argument, under /inputs


class JobGroupStatus(models.TextChoices):
    RUNNING = "running", "Running"  # until every task ended (or will never start)
    FINISHED = "finished", "Finished"
    CANCELLED = "cancelled", "Cancelled"


class TaskStatus(models.TextChoices):
    PENDING = "pending", "Waiting to start"  # no job yet, or waiting for a retry's job
    RUNNING = "running", "Running"  # its job holds its cap (queued, offered or running)
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"
    BUDGET_EXHAUSTED = "budget_exhausted", "Budget exhausted"
    SKIPPED = "skipped", "Not started"  # the group's cap, its wallet or its cancel stopped it


class JobGroup(models.Model):
    """A group's template, limits and progress. Its status and counters change only under
    its row lock (``select_for_update``), through ``jobs.group_states``."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="job_groups"
    )
    name = models.CharField(max_length=JOB_NAME_MAX_LENGTH, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=JobGroupStatus.choices, default=JobGroupStatus.RUNNING
    )
    status_reason = models.CharField(max_length=500, blank=True, default="")
    count = models.PositiveIntegerField()
    max_parallel = models.PositiveIntegerField()
    # The group cap; each task's own cap (its job's max_cost_micros).
    max_cost_micros = models.PositiveBigIntegerField()
    task_max_cost_micros = models.PositiveBigIntegerField()
    # How often a task may be lost or faulted by hosts (each time elsewhere), and how often a
    # task whose script failed (failed, timed out) runs again.
    host_fault_retries = models.PositiveSmallIntegerField(default=3)
    error_retries = models.PositiveSmallIntegerField(default=0)
    # The template: what every task's job is made of (jobs.services.groups).
    placement = models.CharField(max_length=16, choices=PlacementMode.choices)
    requested_host = models.ForeignKey(
        "hosts.Host", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    entrypoint = models.CharField(max_length=255)
    requirements = models.JSONField(default=list, blank=True)
    cpus = models.DecimalField(max_digits=6, decimal_places=2)
    memory_mb = models.PositiveIntegerField()
    gpus = models.PositiveIntegerField(default=0)
    timeout_seconds = models.PositiveIntegerField()
    work_mb = models.PositiveIntegerField(default=1024)
    outputs_mb = models.PositiveIntegerField(default=1024)
    tmp_mb = models.PositiveIntegerField(default=256)
    work_exec = models.BooleanField(default=False)
    code_archive = models.ForeignKey(
        "blobs.Blob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    code_archive_sha256 = models.CharField(max_length=64, blank=True, default="")
    # The private pool every task runs in (docs/pools.md); None: the public marketplace.
    pool = models.ForeignKey(
        "accounts.Organisation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pool_job_groups",
    )
    # Progress, under the row lock: tasks whose job holds its cap now, and what the jobs that
    # settled were charged. settled + open x task cap never passes the cap (constraint).
    open_tasks = models.PositiveIntegerField(default=0)
    settled_cost_micros = models.PositiveBigIntegerField(default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="jobgroup_owner_created"),
            models.Index(fields=["status"], name="jobgroup_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    settled_cost_micros__lte=models.F("max_cost_micros")
                    - models.F("open_tasks") * models.F("task_max_cost_micros")
                ),
                name="jobgroup_within_cap",
            ),
            models.CheckConstraint(
                condition=models.Q(open_tasks__lte=models.F("max_parallel")),
                name="jobgroup_within_parallel",
            ),
            models.CheckConstraint(
                condition=~models.Q(placement="chosen") | models.Q(requested_host__isnull=False),
                name="jobgroup_chosen_needs_host",
            ),
        ]

    def __str__(self) -> str:
        return f"job group #{self.pk} ({self.status})"


class JobGroupTask(models.Model):
    """One index of a group: its argument (the bytes of /inputs/task.json; empty: none), the
    job that runs it now (the latest, a retry's after a retry) and its result."""

    group = models.ForeignKey(JobGroup, on_delete=models.CASCADE, related_name="tasks")
    index = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    reason = models.CharField(max_length=500, blank=True, default="")
    argument = models.TextField(blank=True, default="")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    exit_code = models.IntegerField(null=True, blank=True)
    error_tries = models.PositiveSmallIntegerField(default=0)  # retries after a script error

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "index"], name="uniq_group_task"),
        ]
        indexes = [
            models.Index(fields=["group", "status", "index"], name="grouptask_status_index"),
        ]

    def __str__(self) -> str:
        return f"task {self.index} of group {self.group_id} ({self.status})"


class JobGroupFile(models.Model):
    """One file of the template's code, copied into each task's job (``JobFile``)."""

    group = models.ForeignKey(JobGroup, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=255)
    content = models.BinaryField()
    size = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "path"], name="uniq_group_file"),
        ]

    def __str__(self) -> str:
        return f"{self.path} of group {self.group_id}"


class JobGroupInput(models.Model):
    """An input file of the group's tasks: every task's (``task_index`` None: the template's
    ``shared_inputs``) or one task's (``inputs[i].inputs``). Copied into the task's job
    (``JobInput``) when it starts; ``blob`` keeps a store blob from the collector meanwhile."""

    group = models.ForeignKey(JobGroup, on_delete=models.CASCADE, related_name="inputs")
    task_index = models.PositiveIntegerField(null=True, blank=True)
    path = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=8, choices=InputSource.choices)
    url = models.CharField(max_length=4096, blank=True, default="")
    blob = models.ForeignKey(
        "blobs.Blob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["group", "task_index"], name="groupinput_task")]

    def __str__(self) -> str:
        return f"input {self.path} of group {self.group_id}"


class JobGroupHostExclusion(models.Model):
    """A host that lost or faulted a task of the group: placement offers it no more of the
    group's tasks."""

    group = models.ForeignKey(JobGroup, on_delete=models.CASCADE, related_name="exclusions")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "host"], name="uniq_group_host_exclusion"),
        ]

    def __str__(self) -> str:
        return f"host {self.host_id} excluded from group {self.group_id}"
