"""Request and response shapes for the host endpoints (the catalog reuses the listing)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from operator import itemgetter
from typing import Any

from django.db import models
from django.utils import timezone
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


# The columns a listing reads (``HostListingOutput``): the catalog selects only these.
LISTING_COLUMNS = (
    *(name for name in LISTING_FIELDS if name not in ("is_accepting_jobs", "uptime_bps")),
    "online_seconds",
    "tracked_seconds",
    "quarantined_at",
    "fault_quarantined_at",
)


# The same as attribute names (a row of them, with ``current_status``, is what listing_dict reads)
def _attname(name: str) -> str:
    field = Host._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field.attname


LISTING_ATTNAMES = tuple(_attname(name) for name in LISTING_COLUMNS)


def listing_dict(row: Mapping[str, Any], zone: tzinfo | None = None) -> dict[str, Any]:
    """A catalog entry from a host's columns by attribute name (``LISTING_ATTNAMES`` and
    ``current_status``, as hosts.selectors.status_fresh annotates it): a catalog row as the
    statement gives it, or a host's ``__dict__``. The one listing both endpoints answer with
    (``HostListingOutput`` describes it field by field, and a test checks the two agree).
    ``zone``: the current time zone, looked up once for a page (the lookup costs more than
    the rest of a listing)."""
    zone = zone or timezone.get_current_timezone()
    # Every field copied in the listing's order (its JSON's), then the computed ones set in
    # their places: a dict keeps a key where it was first put.
    listing = dict(zip(LISTING_FIELDS, _listing_sources(row), strict=True))
    listing["is_accepting_jobs"] = _accepting(row)
    listing["uptime_bps"] = _uptime_bps(row)
    listing["last_seen_at"] = _iso(row["last_seen_at"], zone)
    listing["created_at"] = _iso(row["created_at"], zone)
    return listing


def listing_dicts(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``listing_dict`` of each row of a page."""
    zone = timezone.get_current_timezone()
    return [listing_dict(row, zone) for row in rows]


# Where each listing field is read from; the two computed ones take a placeholder column.
_SOURCES = {"status": "current_status", "organisation": "organisation_id"}
_PLACEHOLDER = {"is_accepting_jobs": "is_available", "uptime_bps": "online_seconds"}
_listing_sources = itemgetter(
    *(_SOURCES.get(name) or _PLACEHOLDER.get(name) or name for name in LISTING_FIELDS)
)


def _iso(value: datetime | None, zone: tzinfo | None = None) -> str | None:
    """``serializers.DateTimeField().to_representation``, for the aware datetimes of a row."""
    if value is None:
        return None
    text = value.astimezone(zone or timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _accepting(row: Mapping[str, Any]) -> bool:
    return bool(
        row["current_status"] in (HostStatus.ONLINE, HostStatus.BUSY)
        and row["is_available"]
        and row["is_ready"]
        and not row["is_draining"]
        and row["quarantined_at"] is None
        and row["fault_quarantined_at"] is None
    )


def _uptime_bps(row: Mapping[str, Any]) -> int:
    """10000 * online_seconds / tracked_seconds (0 before the host was first tracked)."""
    tracked = row["tracked_seconds"]
    return 10_000 * row["online_seconds"] // tracked if tracked else 0


class HostListingOutput(serializers.ModelSerializer[Host]):
    """A catalog entry. Expects ``current_status`` annotated (hosts.selectors.status_fresh).

    The declared fields describe the schema; ``to_representation`` is ``listing_dict``,
    because DRF's per-field machinery was most of a catalog page's time (a test checks both
    give the same output).
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
        return listing_dict(host.__dict__)

    def get_is_accepting_jobs(self, host: Host) -> bool:
        return _accepting(host.__dict__)

    def get_uptime_bps(self, host: Host) -> int:
        """10000 * online_seconds / tracked_seconds (0 before the host was first tracked)."""
        return _uptime_bps(host.__dict__)


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

    def to_representation(self, host: Host) -> dict[str, Any]:
        known = {
            **listing_dict(host.__dict__),
            "availability_policy": self.get_availability_policy(host),
            "last_fault_at": _iso(host.last_fault_at),
            "fault_quarantined_at": _iso(host.fault_quarantined_at),
            "quarantined_at": _iso(host.quarantined_at),
        }
        return {
            name: known[name] if name in known else getattr(host, name) for name in OWNER_FIELDS
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
