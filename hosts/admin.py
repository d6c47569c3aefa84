"""Admin for hosts (read-mostly: owners change settings through the API) and their secrets.

ModelAdmin is generic only in django-stubs, hence the type-arg ignores on the class bases.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from hosts.models import SPEC_FIELDS, EnrollmentToken, Host, HostCredential, PoolEnrollmentToken


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "name",
        "owner",
        "status",
        "last_seen_at",
        "cpus",
        "gpu_count",
        "price_micros",
        "reliability_bps",
        "flagged_reports",
        "quarantined_at",
        "is_draining",
    ]
    list_filter = ["status", "visibility", "is_draining", "arch", "os", "quarantined_at"]
    search_fields = ["name", "owner__username", "cpu_model"]
    list_select_related = ["owner"]
    # The specs are the agent's to report (the next hello would overwrite an edit).
    readonly_fields = [
        *SPEC_FIELDS,
        "agent_version",
        "price_micros",
        "reliability_bps",
        "connection_id",
        "last_seen_at",
        "online_seconds",
        "tracked_seconds",
        "jobs_finished",
        "jobs_lost",
        "flagged_reports",
        "last_flag_reason",
        "created_at",
    ]
    raw_id_fields = ["owner", "organisation"]


_SECRET_FIELDS = ("prefix", "digest", "created_at")


@admin.register(HostCredential)
class HostCredentialAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Credentials are minted at enrollment only; owners revoke them through the API."""

    list_display = ["prefix", "host", "created_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "host__name"]
    list_select_related = ["host"]
    readonly_fields = ("host", *_SECRET_FIELDS, "revoked_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EnrollmentToken)
class EnrollmentTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["prefix", "owner", "name", "created_at", "expires_at", "used_at", "host"]
    search_fields = ["prefix", "owner__username", "name"]
    list_select_related = ["owner", "host"]
    readonly_fields = ("owner", "name", *_SECRET_FIELDS, "expires_at", "used_at", "host")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PoolEnrollmentToken)
class PoolEnrollmentTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["prefix", "organisation", "created_by", "created_at", "expires_at", "used_at"]
    search_fields = ["prefix", "organisation__name", "created_by__username"]
    list_select_related = ["organisation", "created_by", "host"]
    readonly_fields = (
        "organisation",
        "created_by",
        *_SECRET_FIELDS,
        "expires_at",
        "used_at",
        "host",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
