"""A pool's audit trail (docs/pools.md, "Audit"): append-only, one row per thing that
happened to a job of the pool, written in the same transaction as the thing itself by
``jobs.services.audit.audit_append`` only."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditKind(models.TextChoices):
    JOB_SUBMITTED = "job.submitted", "Job submitted"
    INPUTS_READ = "job.inputs_read", "Inputs read"
    JOB_FINISHED = "job.finished", "Job finished"
    OUTPUT_KEPT = "output.kept", "Output kept on the pool's store"
    RELEASE_REQUESTED = "output.release_requested", "Output release requested"
    RELEASE_APPROVED = "output.release_approved", "Output release approved"
    RELEASE_REFUSED = "output.release_refused", "Output release refused"
    OUTPUT_RELEASED = "output.released", "Output released to the renter"
    HOST_JOINED = "host.joined", "Host joined the pool"
    HOST_LEFT = "host.left", "Host left the pool"
    SETTINGS_CHANGED = "pool.settings_changed", "Pool settings changed"


class PoolAuditEvent(models.Model):
    """One entry of an organisation's pool audit trail. ``job_id`` and ``host_id`` are plain
    integers: the trail outlives what it names and is never rewritten."""

    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="audit_events"
    )
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=40, choices=AuditKind.choices)
    # Who did it: the submitter, the steward, the admin; None for the agent or the system.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    job_id = models.BigIntegerField(null=True, blank=True)
    host_id = models.BigIntegerField(null=True, blank=True)
    # What it was about: digests of code and requirements, data references (path, url,
    # sha256, size), an output's name/size/sha256, a decision's note.
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organisation", "id"], name="audit_org_id")]

    def __str__(self) -> str:
        return f"{self.kind} in organisation {self.organisation_id}"
