from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from jobs.models import Job, JobAttempt, JobHostRejection, JobOutput

# The admin classes are generic only in django-stubs, which production does not install.
if TYPE_CHECKING:
    _AttemptInline = admin.TabularInline[JobAttempt, Job]
    _JobAdmin = admin.ModelAdmin[Job]
    _OutputAdmin = admin.ModelAdmin[JobOutput]
    _RejectionAdmin = admin.ModelAdmin[JobHostRejection]
else:
    _AttemptInline = admin.TabularInline
    _JobAdmin = _OutputAdmin = _RejectionAdmin = admin.ModelAdmin


class JobAttemptInline(_AttemptInline):
    model = JobAttempt
    extra = 0
    fields = readonly_fields = (
        "number",
        "host",
        "status",
        "reason",
        "offered_at",
        "lease_expires_at",
        "log_offset",
        "usage_seq",
        "usage_cpu_ms",
        "usage_wall_ms",
        "charged_micros",
        "reversed_micros",
    )
    can_delete = False


@admin.register(Job)
class JobAdmin(_JobAdmin):
    list_display = ["id", "owner", "status", "attempt", "host", "cost_micros", "created_at"]
    list_filter = ["status", "placement"]
    search_fields = ["id", "owner__username"]
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [JobAttemptInline]

    # A job is made by job_submit, which holds its cap; deleting one would strand that hold in
    # an escrow nobody settles. Staff cancel jobs through the API like their owners.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(JobOutput)
class JobOutputAdmin(_OutputAdmin):
    list_display = ["job", "attempt", "name", "size", "uploaded_at"]


@admin.register(JobHostRejection)
class JobHostRejectionAdmin(_RejectionAdmin):
    list_display = ["job", "host", "reason", "created_at"]
