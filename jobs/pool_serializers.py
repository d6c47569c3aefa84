"""Request and response shapes of the pool endpoints (docs/pools.md). No rules here: the
settings are checked by ``accounts.pool_settings``, the rest by the services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from accounts.models import PoolLogs
from jobs.audit_models import AuditKind, PoolAuditEvent


class PoolStoreSerializer(serializers.Serializer[Any]):
    endpoint_url = serializers.CharField(help_text="http or https, no credentials")
    bucket = serializers.CharField(help_text="an S3 bucket name")
    prefix = serializers.CharField(required=False, allow_blank=True)
    region = serializers.CharField(required=False, allow_blank=True)


# Declared as a dict: a serializer class can't have a field called ``required`` (it is an
# attribute of every field and serializer). For the schema only; accounts.pool_settings checks.
PoolSettingsSerializer = inline_serializer(
    name="PoolSettings",
    fields={
        "required": serializers.BooleanField(
            required=False, help_text="members' jobs and groups must name the pool"
        ),
        "hidden": serializers.BooleanField(
            required=False,
            help_text="the pool's hosts are private to it, out of the public catalog, and "
            "take only its jobs",
        ),
        "fetch_networks": serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text="CIDR networks (no host bits) URL inputs may be fetched from",
        ),
        "fetch_hosts": serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text="host names (data.example.org or *.example.org) URL inputs may be "
            "fetched from",
        ),
        "job_networks": serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text="internal CIDR networks the run step may reach; never the internet "
            "(wider than /8, or /16 for IPv6, is refused)",
        ),
        "members_free": serializers.BooleanField(
            required=False, help_text="members run on the pool's hosts at zero rates"
        ),
        "output_store": PoolStoreSerializer(
            required=False, help_text="the institution's S3-compatible store; {} for none"
        ),
        "logs": serializers.ChoiceField(choices=PoolLogs.choices, required=False),
        "airlock": serializers.BooleanField(
            required=False, help_text="outputs reach the renter only after a steward's approval"
        ),
    },
)


class PoolJoinInput(serializers.Serializer[Any]):
    token = serializers.CharField(max_length=200, help_text="a pool token from its admins")


class AuditQuery(serializers.Serializer[Any]):
    job = serializers.IntegerField(required=False, min_value=1)
    kind = serializers.ChoiceField(choices=AuditKind.choices, required=False)
    # "from" is a keyword: the field is declared under its query name below.
    to = serializers.DateTimeField(required=False, help_text="exclusive")
    format = serializers.ChoiceField(choices=["json", "csv"], required=False, default="json")

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(required=False, help_text="inclusive")
        return fields


class AuditEventOutput(serializers.ModelSerializer[PoolAuditEvent]):
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)

    class Meta:
        model = PoolAuditEvent
        fields = ["id", "at", "kind", "actor", "job_id", "host_id", "detail"]
        read_only_fields = fields
