"""Jobs, their attempts, files, logs and outputs.

A job is what the renter asked for; an attempt is one offer of it to one host (the attempt
number is the fencing token every agent message carries). Status changes of a job go through
``jobs.states.job_transition`` only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from hosts.models import RatesColumns

JOB_NAME_MAX_LENGTH = 200


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    OFFERED = "offered", "Offered"
    ACCEPTED = "accepted", "Accepted"
    PREPARING = "preparing", "Preparing"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"
    BUDGET_EXHAUSTED = "budget_exhausted", "Budget exhausted"


class AttemptStatus(models.TextChoices):
    OFFERED = "offered", "Offered"
    ACCEPTED = "accepted", "Accepted"
    PREPARING = "preparing", "Preparing"
    RUNNING = "running", "Running"
    REJECTED = "rejected", "Rejected by the host"
    EXPIRED = "expired", "Offer expired"
    LOST = "lost", "Lost"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"
    BUDGET_EXHAUSTED = "budget_exhausted", "Budget exhausted"


class PlacementMode(models.TextChoices):
    AUTO = "auto", "Placed by the marketplace"
    CHOSEN = "chosen", "Host chosen by the renter"


class Job(RatesColumns):
    """A renter's script with its limits, cost cap and the rates of the host it was placed on
    (copied at placement: a later price change never touches this job)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs"
    )
    placement = models.CharField(max_length=16, choices=PlacementMode.choices)
    # The host the renter chose (placement=chosen); the host of the current attempt is `host`.
    requested_host = models.ForeignKey(
        "hosts.Host", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    host = models.ForeignKey(
        "hosts.Host", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    status_reason = models.CharField(max_length=500, blank=True)
    # Number of the current attempt (0 until the first offer); the fencing token.
    attempt = models.PositiveIntegerField(default=0)
    # How many attempts may be accepted by hosts before a lost one fails the job.
    max_attempts = models.PositiveIntegerField()
    entrypoint = models.CharField(max_length=255)
    # What the renter calls the job (lists, receipts, wallet history); the entrypoint's file
    # name when none was given (job_submit).
    name = models.CharField(max_length=JOB_NAME_MAX_LENGTH, blank=True, default="")
    requirements = models.JSONField(default=list, blank=True)
    cpus = models.DecimalField(max_digits=6, decimal_places=2)
    memory_mb = models.PositiveIntegerField()
    gpus = models.PositiveIntegerField(default=0)
    timeout_seconds = models.PositiveIntegerField()
    max_cost_micros = models.PositiveBigIntegerField()
    allow_network = models.BooleanField(default=False)
    # The data plane (docs/jobs.md, "Inputs" and "Disk"): the size of each writable file
    # system in MB, whether /work may hold programs to run, the bytes of the inputs (store
    # sizes and stated URL sizes: placement's disk fit) and the code archive, a zip blob the
    # owner held at submit (its digest stays when the blob is gone, for the record).
    work_mb = models.PositiveIntegerField(default=1024)
    outputs_mb = models.PositiveIntegerField(default=1024)
    tmp_mb = models.PositiveIntegerField(default=256)
    work_exec = models.BooleanField(default=False)
    inputs_bytes = models.PositiveBigIntegerField(default=0)
    code_archive = models.ForeignKey(
        "blobs.Blob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    code_archive_sha256 = models.CharField(max_length=64, blank=True, default="")
    cost_micros = models.PositiveBigIntegerField(default=0)
    exit_code = models.IntegerField(null=True, blank=True)
    # Settled: the rest of the cap (held in the submit's own transaction) went back to the
    # wallet. Marks the settlement done for the reaper and the charges poster.
    hold_released_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    # Why a queued job waits (the best host's misfit, or the queue it is in), for the renter.
    waiting_reason = models.CharField(max_length=300, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A task of a job group (docs/jobs.md, "Job groups"): the group and the index it runs
    # (a retried index gets a job of its own); None for a job submitted alone.
    group = models.ForeignKey(
        "jobs.JobGroup", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    task_index = models.PositiveIntegerField(null=True, blank=True)
    # The private pool (an organisation) the job runs in (docs/pools.md): only the pool's
    # hosts are offered it, it waits for one, and the organisation's wallet pays.
    pool = models.ForeignKey(
        "accounts.Organisation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pool_jobs",
    )

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            models.Index(fields=["status", "queued_at"], name="job_status_queued"),
            models.Index(fields=["group", "task_index"], name="job_group_task"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(cost_micros__lte=models.F("max_cost_micros")),
                name="job_cost_within_cap",
            ),
            models.CheckConstraint(
                condition=~models.Q(placement="chosen") | models.Q(requested_host__isnull=False),
                name="job_chosen_needs_host",
            ),
            models.CheckConstraint(
                condition=models.Q(group__isnull=True, task_index__isnull=True)
                | models.Q(group__isnull=False, task_index__isnull=False),
                name="job_task_of_group",
            ),
        ]

    def __str__(self) -> str:
        return f"job #{self.pk} ({self.status})"


class JobFile(models.Model):
    """One file of the job's code or input, stored in the database (sizes are capped)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=255)
    content = models.BinaryField()
    size = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "path"], name="uniq_job_file")]

    def __str__(self) -> str:
        return f"{self.path} of job {self.job_id}"


class InputSource(models.TextChoices):
    STORE = "store", "the blob store"
    URL = "url", "the renter's URL"


class JobInput(models.Model):
    """One file the job reads at ``/inputs/<path>``: a blob the owner held at submit, or the
    renter's https URL with the digest the agent checks. ``blob`` is kept for the store's
    garbage collector (a blob an unfinished job reads stays); ``size`` is None for a URL that
    stated none."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="inputs")
    path = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=8, choices=InputSource.choices)
    url = models.CharField(max_length=4096, blank=True, default="")
    blob = models.ForeignKey(
        "blobs.Blob", null=True, blank=True, on_delete=models.SET_NULL, related_name="job_inputs"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "path"], name="uniq_job_input")]

    def __str__(self) -> str:
        return f"input {self.path} of job {self.job_id}"


class JobAttempt(RatesColumns):
    """One offer of a job to one host and, when accepted, its run. Unique per (job, number).

    Its rates are copied from the host with the offer: each attempt is billed at its own host's.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    host = models.ForeignKey("hosts.Host", on_delete=models.PROTECT, related_name="job_attempts")
    status = models.CharField(
        max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.OFFERED
    )
    reason = models.CharField(max_length=500, blank=True)
    offered_at = models.DateTimeField(auto_now_add=True)
    offer_expires_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    # Logs: every byte before log_offset is stored, except those before log_start (dropped to
    # keep the tail within JOB_LOG_MAX_BYTES).
    log_offset = models.PositiveBigIntegerField(default=0)
    log_start = models.PositiveBigIntegerField(default=0)
    # The log's whole length as the agent declared it in job.finished (None: not declared).
    log_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    # Metering (docs/metering.md): the latest accepted cumulative report (by seq) and its
    # counters; what the ledger charged the attempt (gross captured) and up to which report
    # (both advanced in the same transaction as the captures); what was reversed (lost).
    usage_seq = models.BigIntegerField(default=-1)
    usage = models.JSONField(default=dict, blank=True)
    usage_cpu_ms = models.BigIntegerField(default=0)
    usage_wall_ms = models.BigIntegerField(default=0)
    charged_micros = models.PositiveBigIntegerField(default=0)
    charged_seq = models.BigIntegerField(default=-1)
    reversed_micros = models.PositiveBigIntegerField(default=0)
    # "host" when the attempt ended as the host's fault (not charged, the job runs elsewhere);
    # the engine's detail is for the host owner only.
    fault = models.CharField(max_length=8, blank=True, default="")
    fault_detail = models.CharField(max_length=2000, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="uniq_job_attempt"),
            models.CheckConstraint(
                condition=models.Q(reversed_micros__lte=models.F("charged_micros")),
                name="attempt_reversed_within_charged",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "offer_expires_at"], name="attempt_offer_expiry"),
            models.Index(fields=["status", "lease_expires_at"], name="attempt_lease_expiry"),
            models.Index(fields=["host", "status"], name="attempt_host_status"),
            # The batch poster's work list: attempts with reports newer than their charges.
            models.Index(
                fields=["id"],
                name="attempt_billing_due",
                condition=models.Q(usage_seq__gt=models.F("charged_seq")),
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} attempt {self.number} on host {self.host_id} ({self.status})"


class UsageReport(models.Model):
    """One accepted cumulative usage report of an attempt: the record its charges derive from.

    Unique per (attempt, seq): a repeated report is stored once. Only reports that passed the
    checks (monotonic, physically possible) are kept; counters are integer milliseconds.
    """

    attempt = models.ForeignKey(
        JobAttempt, on_delete=models.CASCADE, related_name="usage_reports", db_index=False
    )
    seq = models.BigIntegerField()
    cpu_ms = models.BigIntegerField()
    wall_ms = models.BigIntegerField()
    gpu_ms = models.BigIntegerField(default=0)
    memory_peak_mb = models.PositiveIntegerField(default=0)
    # The memory in use when the report was made: the usage history's memory curve.
    memory_current_mb = models.PositiveIntegerField(default=0)
    is_final = models.BooleanField(default=False)
    received_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["attempt", "seq"], name="uniq_usage_report")]

    def __str__(self) -> str:
        return f"usage {self.seq} of attempt {self.attempt_id}"


class JobLogChunk(models.Model):
    """Bytes ``[offset, offset + size)`` of one attempt's combined stdout/stderr."""

    attempt = models.ForeignKey(JobAttempt, on_delete=models.CASCADE, related_name="log_chunks")
    offset = models.PositiveBigIntegerField()
    size = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["attempt", "offset"], name="uniq_log_chunk")]

    def __str__(self) -> str:
        return f"log of attempt {self.attempt_id} at {self.offset}+{self.size}"


def _output_path(instance: JobOutput, filename: str) -> str:
    """Where outputs lived before blobs: migrations 0001 (the field) and 0007 (moved) use it."""
    return f"job-outputs/{instance.job_id}/{instance.attempt_id}/{instance.sha256}"


class OutputLocation(models.TextChoices):
    """Where an output's bytes are (docs/pools.md, "Outputs leave only when released")."""

    CENTRAL = "central", "On the central store"
    POOL = "pool", "On the pool's own store"


class ReleaseStatus(models.TextChoices):
    """An output on the pool's store on its way to the renter (jobs.services.releases holds
    the one state machine): none -> requested -> approved | refused; none -> approved (no
    airlock: the pool's policy); approved -> released (the bytes reached the central store)."""

    NONE = "none", "Not requested"
    REQUESTED = "requested", "Release requested"
    APPROVED = "approved", "Approved, on its way"
    REFUSED = "refused", "Refused"
    RELEASED = "released", "Released"


class JobOutput(models.Model):
    """A file the job left in /outputs: metadata from job.finished, its bytes a blob the agent
    uploaded with tus (docs/data.md); the job's owner holds that blob. An output of a pool job
    whose pool keeps outputs (``location`` pool) has no blob until it is released."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="outputs")
    attempt = models.ForeignKey(JobAttempt, on_delete=models.CASCADE, related_name="outputs")
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    # Set when the upload completed; None again if the collector deleted the blob after the
    # owner dropped their holding (the output is then gone).
    blob = models.ForeignKey(
        "blobs.Blob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When the bytes were stored: on the central store (the upload completed) or, for
    # ``location`` pool, on the pool's store (the agent's job.finished said so).
    uploaded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    location = models.CharField(
        max_length=16, choices=OutputLocation.choices, default=OutputLocation.CENTRAL
    )
    # The object's key on the pool's store (<prefix>jobs/<job>/<attempt>/outputs/<name>).
    store_key = models.CharField(max_length=1024, blank=True, default="")
    release_status = models.CharField(
        max_length=16, choices=ReleaseStatus.choices, default=ReleaseStatus.NONE
    )
    release_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    release_requested_at = models.DateTimeField(null=True, blank=True)
    # The steward who approved or refused; None with a decision: the pool's policy (no airlock).
    release_decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    release_decided_at = models.DateTimeField(null=True, blank=True)
    release_note = models.CharField(max_length=2000, blank=True, default="")
    # The pool host last asked to carry the approved bytes to the central store, and when.
    release_host = models.ForeignKey(
        "hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    release_sent_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["attempt", "name"], name="uniq_attempt_output")
        ]
        indexes = [
            models.Index(
                fields=["release_status", "release_sent_at"],
                name="output_release_pending",
                condition=models.Q(release_status="approved"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} of job {self.job_id}"


class RejectionKind(models.TextChoices):
    """What a host's no means for the job (``jobs.services.dispatch``, most lasting first)."""

    REFUSED = "refused", "refused"  # its policy or a misfit: never offered there again
    HOST_FAULT = "host_fault", "host fault"  # it could not run it: others first
    LOST = "lost", "lost"  # it lost the attempt: others first
    EXPIRED = "expired", "did not answer"  # not offered there for a few seconds
    BUSY = "busy", "busy"  # not offered there for a few seconds


class JobHostRejection(models.Model):
    """A host that refused, faulted, lost, let expire or was busy for this job: placement
    skips it as its ``kind`` says."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="rejections")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(
        max_length=16, choices=RejectionKind.choices, default=RejectionKind.REFUSED
    )
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "host"], name="uniq_job_host_rejection")
        ]

    def __str__(self) -> str:
        return f"host {self.host_id} refused job {self.job_id}"


# The job groups' models live in their own module; importing them here makes them models of
# this app (migrations, the registry).
from jobs.audit_models import AuditKind, PoolAuditEvent  # noqa: E402
from jobs.group_models import (  # noqa: E402
    TASK_ARGUMENT_PATH,
    JobGroup,
    JobGroupFile,
    JobGroupHostExclusion,
    JobGroupInput,
    JobGroupStatus,
    JobGroupTask,
    TaskStatus,
)

__all__ = [
    "TASK_ARGUMENT_PATH",
    "AttemptStatus",
    "AuditKind",
    "InputSource",
    "Job",
    "JobAttempt",
    "JobFile",
    "JobGroup",
    "JobGroupFile",
    "JobGroupHostExclusion",
    "JobGroupInput",
    "JobGroupStatus",
    "JobGroupTask",
    "JobHostRejection",
    "JobInput",
    "JobLogChunk",
    "JobOutput",
    "JobStatus",
    "OutputLocation",
    "PlacementMode",
    "PoolAuditEvent",
    "RejectionKind",
    "ReleaseStatus",
    "TaskStatus",
    "UsageReport",
]
