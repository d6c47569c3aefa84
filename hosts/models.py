from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, NullIf

from agent.metering import Rates
from agent.protocol import HostSpecs, JobRates


class HostStatus(models.TextChoices):
    ONLINE = "online", "Online"
    BUSY = "busy", "Busy"
    DRAINING = "draining", "Draining"
    OFFLINE = "offline", "Offline"


class HostIsolation(models.TextChoices):
    DOCKER = "docker", "isolated (Docker)"
    NONE = "none", "not isolated"


class HostVisibility(models.TextChoices):
    PUBLIC = "public", "Public"
    PRIVATE = "private", "Private to an organisation"


# The columns of the three rates, named as ``Rates``' fields (and the API's and the wire's).
RATE_FIELDS = tuple(field.name for field in dataclasses.fields(Rates))
# The columns the agent's specs (``hello``, enrollment) fill: ``HostSpecs`` plus ``gpu_count``.
# The spec update, the listing and the admin read this one tuple.
SPEC_FIELDS = (
    "cpu_model",
    "arch",
    "cpus",
    "memory_mb",
    "disk_free_mb",
    "os",
    "os_version",
    "gpus",
    "gpu_count",
    "docker_available",
    "disk_quota",
    "job_disk_mb",
)


# The catalog orders by when a host was last seen with a host never seen as seen at the epoch,
# so the sort key is never null (a keyset cursor compares it with ``<``/``>``) and an index on
# the same expression serves it: newest first puts never-seen hosts last.
LAST_SEEN_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def last_seen_key() -> Coalesce:
    """``last_seen_at``, the epoch when null: the catalog's ``last_seen`` key (and its index)."""
    return Coalesce(F("last_seen_at"), Value(LAST_SEEN_NEVER), output_field=models.DateTimeField())


def rates_columns(rates: Rates) -> JobRates:
    """The rates as column values (for ``create``/``update``) and as the offer's ``rates``."""
    return JobRates(
        cpu_core_hour_micros=rates.cpu_core_hour_micros,
        memory_gb_hour_micros=rates.memory_gb_hour_micros,
        gpu_hour_micros=rates.gpu_hour_micros,
    )


class RatesColumns(models.Model):
    """Micro-credits per unit-hour as three columns, read and written as one ``Rates``.

    A host lists them; a job and each attempt keep a copy from placement (``set_rates``), so a
    later price change never touches work already placed.
    """

    cpu_core_hour_micros = models.PositiveBigIntegerField(default=0)
    memory_gb_hour_micros = models.PositiveBigIntegerField(default=0)
    gpu_hour_micros = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True

    @property
    def rates(self) -> Rates:
        return Rates(self.cpu_core_hour_micros, self.memory_gb_hour_micros, self.gpu_hour_micros)

    def set_rates(self, rates: Rates) -> None:
        self.cpu_core_hour_micros = rates.cpu_core_hour_micros
        self.memory_gb_hour_micros = rates.memory_gb_hour_micros
        self.gpu_hour_micros = rates.gpu_hour_micros


class Host(RatesColumns):
    """A machine whose owner rents it out through the agent.

    Specs (``SPEC_FIELDS``) are what the agent reported last; rates (``RatesColumns``) are
    copied onto a job when it is placed, so changing them never touches a running job.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="hosts"
    )
    name = models.CharField(max_length=100)
    # Specs reported by the agent.
    cpu_model = models.CharField(max_length=200, blank=True)
    arch = models.CharField(max_length=32, blank=True, db_index=True)
    cpus = models.PositiveIntegerField(default=0)
    memory_mb = models.PositiveBigIntegerField(default=0)
    disk_free_mb = models.PositiveBigIntegerField(default=0)
    os = models.CharField(max_length=32, blank=True)
    os_version = models.CharField(max_length=100, blank=True)
    gpus = models.JSONField(default=list, blank=True)  # [{"model": str, "memory_mb": int}]
    gpu_count = models.PositiveIntegerField(default=0)
    docker_available = models.BooleanField(default=False)
    # The data plane (docs/hosts.md, "Disk"): whether a job's /work, /outputs and /tmp are
    # size-limited file systems there, and the most disk one job may ask for (None: an agent
    # that never said; placement then uses disk_free_mb).
    disk_quota = models.BooleanField(default=False)
    job_disk_mb = models.PositiveBigIntegerField(null=True, blank=True)
    agent_version = models.CharField(max_length=32, blank=True)
    # The catalog's "price": one hour of one fully used core with 1 GB of memory reserved.
    # A stored column so the catalog can filter and order by it through an index.
    price_micros = models.GeneratedField(
        expression=F("cpu_core_hour_micros") + F("memory_gb_hour_micros"),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )
    # The largest job this host accepts (0 = whatever the specs allow).
    max_job_cpus = models.PositiveIntegerField(default=0)
    max_job_memory_mb = models.PositiveBigIntegerField(default=0)
    max_job_gpus = models.PositiveIntegerField(default=0)
    max_job_timeout_seconds = models.PositiveIntegerField(default=24 * 3600)
    allow_network = models.BooleanField(default=False)
    # Status and presence.
    status = models.CharField(
        max_length=16, choices=HostStatus.choices, default=HostStatus.OFFLINE, db_index=True
    )
    is_available = models.BooleanField(default=True)  # the agent's idle/time-window verdict
    unavailable_reason = models.CharField(max_length=200, blank=True)
    is_draining = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The channel name of the one live agent connection; presence updates from any other
    # connection of this host are refused, so a replaced socket can never touch the row.
    connection_id = models.CharField(max_length=100, blank=True, default="")
    # Visibility.
    visibility = models.CharField(
        max_length=16, choices=HostVisibility.choices, default=HostVisibility.PUBLIC
    )
    organisation = models.ForeignKey(
        "accounts.Organisation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="hosts",
    )
    # Availability policy: {"timezone": "Europe/Berlin", "windows": [{"days": [0..6],
    # "start": "HH:MM", "end": "HH:MM"}], "idle_minutes": int|None, "max_load": float|None}
    availability_policy = models.JSONField(default=dict, blank=True)
    # Reliability figures, updated from job outcomes and presence.
    jobs_finished = models.PositiveIntegerField(default=0)
    jobs_lost = models.PositiveIntegerField(default=0)
    online_seconds = models.PositiveBigIntegerField(default=0)
    tracked_seconds = models.PositiveBigIntegerField(default=0)
    # reliability_bps = 10000 * online_seconds / tracked_seconds          (uptime)
    #                   * (jobs_finished + 1)
    #                   / (jobs_finished + jobs_lost + flagged_reports + 1)  (completion)
    # in integer arithmetic, left to right; 0 for a host never tracked. The +1 is a prior of
    # one finished job, so a host's first lost job halves its completion instead of zeroing it;
    # every flagged report counts like a lost job.
    reliability_bps = models.GeneratedField(
        expression=Coalesce(
            Value(10_000)
            * F("online_seconds")
            / NullIf(F("tracked_seconds"), Value(0))
            * (F("jobs_finished") + Value(1))
            / (F("jobs_finished") + F("jobs_lost") + F("flagged_reports") + Value(1)),
            Value(0),
        ),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )
    # Reports that were impossible or late (metering: refused reports, a cancel or timeout
    # ignored) raise this flag; HOST_QUARANTINE_FLAGS of them quarantine the host.
    flagged_reports = models.PositiveIntegerField(default=0)
    last_flag_reason = models.CharField(max_length=200, blank=True, default="")
    # Set once flagged_reports reaches HOST_QUARANTINE_FLAGS: placement offers it nothing until
    # staff lift it (clear the field). Shown to the owner and staff with the reason.
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantine_reason = models.CharField(max_length=300, blank=True, default="")
    # Scheduling, from the agent's hello and heartbeats (docs/hosts.md "Slots and readiness").
    # How many jobs the agent runs at once; placement also keeps within cores/memory/GPUs.
    slots = models.PositiveSmallIntegerField(default=1)
    # The agent's last self-check: a host that isn't ready is offered nothing.
    is_ready = models.BooleanField(default=True)
    not_ready_reason = models.CharField(max_length=2000, blank=True, default="")
    # "" until the agent first says hello (a host that never did is offline anyway).
    isolation = models.CharField(max_length=8, choices=HostIsolation.choices, blank=True)
    # The id the agent generated at enrollment (its containers carry it as a label).
    install_id = models.CharField(max_length=64, blank=True, default="")
    # Each socket draws the next number when it connects; the one that said hello with the
    # highest number is the live one (``live_connection_seq``), so a handshake served late
    # can't replace a newer socket.
    connection_seq = models.PositiveBigIntegerField(default=0)
    live_connection_seq = models.PositiveBigIntegerField(default=0)
    # Host faults (the host could not prepare, start or supervise a job): counted, the last
    # one's engine detail kept for the owner; HOST_FAULT_QUARANTINE in a row quarantine the
    # host until its agent says hello again, ready.
    host_faults = models.PositiveIntegerField(default=0)
    host_faults_in_row = models.PositiveIntegerField(default=0)
    last_fault_at = models.DateTimeField(null=True, blank=True)
    last_fault_detail = models.CharField(max_length=2000, blank=True, default="")
    fault_quarantined_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["visibility", "status"], name="host_visibility_status"),
            # The catalog's orderings (marketplace.selectors.ORDERINGS), each with the pk that
            # breaks ties in the same direction, so a page in either direction is an index scan
            # (backwards for descending) that stops after the page: docs/hosts.md, "Pages".
            models.Index(fields=["price_micros", "id"], name="host_price"),
            models.Index(fields=["reliability_bps", "id"], name="host_reliability"),
            models.Index(fields=["gpu_hour_micros", "id"], name="host_gpu_price"),
            # gpu=true / min_gpus ordered by gpu_price: without GPU-less hosts to skip.
            models.Index(
                fields=["gpu_hour_micros", "id"],
                condition=Q(gpu_count__gte=1),
                name="host_gpu_price_with_gpu",
            ),
            models.Index(fields=["cpus", "id"], name="host_cpus"),
            models.Index(fields=["memory_mb", "id"], name="host_memory"),
            models.Index(last_seen_key(), F("id"), name="host_last_seen"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(visibility="public") | models.Q(organisation__isnull=False),
                name="host_private_needs_organisation",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    def set_specs(self, specs: HostSpecs) -> None:
        """Copy specs that ``hosts.specs.specs_clean`` accepted onto the ``SPEC_FIELDS``."""
        columns = {
            **specs,
            "gpus": [dict(gpu) for gpu in specs["gpus"]],
            "gpu_count": len(specs["gpus"]),
            # Older agents send neither: no quota, no allowance beyond disk_free_mb.
            "disk_quota": specs.get("disk_quota", False),
            "job_disk_mb": specs.get("job_disk_mb"),
        }
        for name in SPEC_FIELDS:
            setattr(self, name, columns[name])


class EnrollmentToken(models.Model):
    """A one-time, short-lived token an owner hands to `communipute-agent enroll`."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrollment_tokens"
    )
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    host = models.OneToOneField(
        Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="enrollment"
    )

    def __str__(self) -> str:
        return f"enrollment {self.prefix}…"


class HostCredential(models.Model):
    """The agent's bearer secret (accounts.tokens scheme); revocable by the owner."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="credentials")
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"credential {self.prefix}… for host {self.host_id}"


class PoolEnrollmentToken(models.Model):
    """A one-time, short-lived token an organisation's admin issues so that a host owner can
    join a host to the organisation's pool (docs/pools.md, "Enrollment"). Only its digest is
    stored (accounts.tokens); the plaintext is shown once."""

    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.CASCADE, related_name="pool_tokens"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    host = models.ForeignKey(
        Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="pool_tokens"
    )

    def __str__(self) -> str:
        return f"pool token {self.prefix}… for organisation {self.organisation_id}"
