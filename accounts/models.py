from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A person: renter, host owner, or both. Staff users see billing reports."""

    email = models.EmailField(unique=True)


class PoolLogs(models.TextChoices):
    """Where a pool job's log goes (docs/pools.md)."""

    CENTRAL = "central", "Sent to the server, as for any job"
    STORE = "store", "Kept on the pool's store; the server gets sizes only"
    REDACTED = "redacted", "Not kept: the server gets sizes only"


class Organisation(models.Model):
    """A group whose members may use hosts that are private to it: an institution's pool
    (docs/pools.md). Its ``pool_*`` settings are set by its admins."""

    name = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Members' jobs must name the pool (a job without ``pool`` from a member is refused).
    pool_required = models.BooleanField(default=False)
    # The pool's hosts stay out of the public catalog and take only the pool's jobs.
    pool_hidden = models.BooleanField(default=True)
    # Where a pool job's URL inputs may be fetched from besides public https: CIDR networks
    # (["10.0.0.0/8"]) and host names ("data.example.org", "*.example.org"). The pool's hosts
    # fetch them inside the institution; the server never fetches them.
    pool_fetch_networks = models.JSONField(default=list, blank=True)
    pool_fetch_hosts = models.JSONField(default=list, blank=True)
    # Internal addresses (CIDR networks) a pool job's run step may reach; never the internet.
    pool_job_networks = models.JSONField(default=list, blank=True)
    # Members run on the pool's hosts at zero rates (the machines are the institution's);
    # usage is still metered for the reports.
    pool_members_free = models.BooleanField(default=False)
    # An S3-compatible store on the institution's side for the pool jobs' outputs:
    # {"endpoint_url", "bucket", "prefix", "region"}; {} = outputs go to the central store.
    # Its credentials are on the hosts, never here.
    pool_output_store = models.JSONField(default=dict, blank=True)
    pool_logs = models.CharField(max_length=16, choices=PoolLogs.choices, default=PoolLogs.CENTRAL)
    # Outputs reach the renter only after a steward of the organisation approved them.
    pool_airlock = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name


class MembershipRole(models.TextChoices):
    MEMBER = "member", "Member"
    ADMIN = "admin", "Admin"


class Membership(models.Model):
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(
        max_length=16, choices=MembershipRole.choices, default=MembershipRole.MEMBER
    )
    # A data steward approves or refuses the release of the pool's outputs (the airlock).
    is_steward = models.BooleanField(default=False)
    # What the member may spend of the organisation's wallet per calendar month (UTC);
    # None: no cap of its own (the wallet's balance is the limit).
    monthly_cap_micros = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "user"], name="uniq_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.organisation_id} ({self.role})"


class ApiToken(models.Model):
    """A personal API token. Only its digest is stored; the plaintext is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class IdempotencyState(models.TextChoices):
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"


class IdempotencyRecord(models.Model):
    """The first response to a POST that carried an ``Idempotency-Key`` (accounts.idempotency).

    One row per (user, endpoint, key). The unique constraint is the lock: whoever inserts the
    row runs the view; everyone else reads the row.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_records"
    )
    endpoint = models.CharField(max_length=255)  # "POST /api/v1/jobs/"
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # sha256 hex of the request body
    state = models.CharField(
        max_length=16, choices=IdempotencyState.choices, default=IdempotencyState.PROCESSING
    )
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "endpoint", "key"], name="uniq_idempotency_user_endpoint_key"
            )
        ]
        indexes = [models.Index(fields=["started_at"], name="idempotency_started_at")]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.key} ({self.state})"
