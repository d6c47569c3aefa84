"""Request and response shapes for the host endpoints (the catalog reuses the listing)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from config.api import MicrosField
from hosts.models import RATE_FIELDS, SPEC_FIELDS, Host, HostStatus
from hosts.policy import policy_normalise

LISTING_FIELDS = [
    "id",
    "name",
    *SPEC_FIELDS,
    "agent_version",
    *RATE_FIELDS,
    "price_micros",
    "max_job_cpus",
    "max_job_memory_mb",
    "max_job_gpus",
    "max_job_timeout_seconds",
    "allow_network",
    "status",
    "is_available",
    "is_draining",
    "is_accepting_jobs",
    "slots",
    "is_ready",
    "isolation",
    "last_seen_at",
    "visibility",
    "organisation",
    "reliability_bps",
    "uptime_bps",
    "jobs_finished",
    "jobs_lost",
    "created_at",
]


_DATETIME = serializers.DateTimeField()
# The columns a listing reads (``HostListingOutput``): the catalog selects only these.
LISTING_COLUMNS = (
    *(name for name in LISTING_FIELDS if name not in ("is_accepting_jobs", "uptime_bps")),
    "online_seconds",
    "tracked_seconds",
    "quarantined_at",
    "fault_quarantined_at",
)


class HostListingOutput(serializers.ModelSerializer[Host]):
    """A catalog entry. Expects ``current_status`` annotated (hosts.selectors.status_fresh).

    The declared fields describe the schema; ``to_representation`` builds the same dict
    directly, because DRF's per-field machinery was most of a catalog page's time (a test
    checks both give the same output).
    """

    status = serializers.CharField(source="current_status", read_only=True)
    is_accepting_jobs = serializers.SerializerMethodField()
    uptime_bps = serializers.SerializerMethodField()
    organisation = serializers.IntegerField(source="organisation_id", read_only=True)

    class Meta:
        model = Host
        fields = LISTING_FIELDS
        read_only_fields = LISTING_FIELDS

    def to_representation(self, host: Host) -> dict[str, Any]:
        computed = self._computed(host)
        return {
            name: computed[name] if name in computed else getattr(host, name)
            for name in self.Meta.fields
        }

    def _computed(self, host: Host) -> dict[str, Any]:
        last_seen_at = host.last_seen_at
        return {
            "status": host.current_status,  # type: ignore[attr-defined]
            "is_accepting_jobs": self.get_is_accepting_jobs(host),
            "uptime_bps": self.get_uptime_bps(host),
            "organisation": host.organisation_id,
            "last_seen_at": last_seen_at and _DATETIME.to_representation(last_seen_at),
            "created_at": _DATETIME.to_representation(host.created_at),
        }

    def get_is_accepting_jobs(self, host: Host) -> bool:
        connected = host.current_status in (HostStatus.ONLINE, HostStatus.BUSY)  # type: ignore[attr-defined]
        return (
            connected
            and host.is_available
            and host.is_ready
            and not host.is_draining
            and host.quarantined_at is None
            and host.fault_quarantined_at is None
        )

    def get_uptime_bps(self, host: Host) -> int:
        """10000 * online_seconds / tracked_seconds (0 before the host was first tracked)."""
        if not host.tracked_seconds:
            return 0
        return 10_000 * host.online_seconds // host.tracked_seconds


OWNER_FIELDS = [
    *LISTING_FIELDS,
    "availability_policy",
    "unavailable_reason",
    "online_seconds",
    "tracked_seconds",
    "has_live_credential",
    "flagged_reports",
    "last_flag_reason",
    "quarantined_at",
    "quarantine_reason",
    "not_ready_reason",
    "host_faults",
    "last_fault_at",
    "last_fault_detail",
    "fault_quarantined_at",
]


class OwnedHostOutput(HostListingOutput):
    """The owner's view; expects ``has_live_credential`` annotated too (hosts_owned)."""

    availability_policy = serializers.SerializerMethodField()
    has_live_credential = serializers.BooleanField(read_only=True)

    class Meta:
        model = Host
        fields = OWNER_FIELDS
        read_only_fields = OWNER_FIELDS

    def _computed(self, host: Host) -> dict[str, Any]:
        return {
            **super()._computed(host),
            "availability_policy": self.get_availability_policy(host),
            "last_fault_at": host.last_fault_at and _DATETIME.to_representation(host.last_fault_at),
            "fault_quarantined_at": host.fault_quarantined_at
            and _DATETIME.to_representation(host.fault_quarantined_at),
            "quarantined_at": host.quarantined_at
            and _DATETIME.to_representation(host.quarantined_at),
        }

    def get_availability_policy(self, host: Host) -> dict[str, Any]:
        return dict(policy_normalise(host.availability_policy))


class HostUpdateInput(serializers.Serializer[Any]):
    """PATCH /my/hosts/{id}/: every field optional; the service checks the values."""

    name = serializers.CharField(required=False, max_length=100)
    cpu_core_hour_micros = MicrosField(required=False)
    memory_gb_hour_micros = MicrosField(required=False)
    gpu_hour_micros = MicrosField(required=False)
    max_job_cpus = serializers.IntegerField(required=False)
    max_job_memory_mb = serializers.IntegerField(required=False)
    max_job_gpus = serializers.IntegerField(required=False)
    max_job_timeout_seconds = serializers.IntegerField(required=False)
    allow_network = serializers.BooleanField(required=False)
    visibility = serializers.CharField(required=False)
    organisation = serializers.IntegerField(required=False, allow_null=True)
    availability_policy = serializers.JSONField(required=False)
    is_draining = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {name: "not a field you can change" for name in sorted(unknown)}
            )
        if "organisation" in attrs:
            attrs["organisation_id"] = attrs.pop("organisation")
        return attrs


class EnrollmentInput(serializers.Serializer[Any]):
    name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")


class EnrollmentOutput(serializers.Serializer[Any]):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()
    command = serializers.CharField()


class AgentRegisterInput(serializers.Serializer[Any]):
    enrollment_token = serializers.CharField(max_length=200)
    specs = serializers.JSONField()
    name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")


class AgentRegisterOutput(serializers.Serializer[Any]):
    host_id = serializers.IntegerField()
    credential = serializers.CharField()


class CredentialsRevokedOutput(serializers.Serializer[Any]):
    revoked = serializers.IntegerField()


class PoolTokenOutput(serializers.Serializer[Any]):
    """A pool token: ``token`` is shown here only (docs/pools.md, "Enrollment")."""

    token = serializers.CharField(help_text="POST it to /api/v1/my/hosts/{id}/pool/")
    expires_at = serializers.DateTimeField()
    organisation = serializers.IntegerField(source="organisation_id")
