"""A host's place in a pool (docs/pools.md, "Enrollment"): an organisation's admin issues a
one-time pool token; the host's owner joins the host with it and may leave again.

``Host.organisation`` is the pool the host is in. Only these services change it: the owner's
settings (``hosts.services.host_update``) change the visibility within what the pool allows,
never the pool. The callers (``jobs.services.pools``) own the transaction and write the
audit trail in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import MembershipRole, Organisation, User
from accounts.selectors import membership_of
from accounts.tokens import PREFIX_LENGTH, secret_issue, secret_matches
from config.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from hosts.models import Host, HostVisibility, PoolEnrollmentToken

POOL_TOKEN_KIND = "cpp"  # noqa: S105 (a prefix, not a secret)
# jobs.states.ATTEMPT_OPEN's values (hosts sits below jobs; tests/hosts/test_pools.py pins
# them equal): an attempt that is offered or runs.
OPEN_ATTEMPT_STATUSES = ("offered", "accepted", "preparing", "running")


@dataclass(frozen=True)
class PoolTokenIssued:
    token: str  # shown once
    expires_at: datetime
    organisation_id: int


def pool_token_issue(
    *, actor: User, organisation_id: int, now: datetime | None = None
) -> PoolTokenIssued:
    """An admin of the organisation mints a one-time pool token (a member: 403, anyone else:
    404). It expires after ENROLLMENT_TOKEN_TTL_SECONDS, like an agent's enrollment token."""
    membership = membership_of(actor, organisation_id)
    if membership.role != MembershipRole.ADMIN:
        raise PermissionDenied("Only an admin of this organisation can issue pool tokens.")
    now = now or timezone.now()
    issued = secret_issue(POOL_TOKEN_KIND)
    expires_at = now + timedelta(seconds=settings.ENROLLMENT_TOKEN_TTL_SECONDS)
    PoolEnrollmentToken.objects.create(
        organisation_id=organisation_id,
        created_by=actor,
        prefix=issued.prefix,
        digest=issued.digest,
        expires_at=expires_at,
    )
    return PoolTokenIssued(issued.plaintext, expires_at, organisation_id)


def _invalid_token(why: str) -> ValidationFailed:
    return ValidationFailed(why, code="invalid_token", fields={"token": [why]})


def _owned_host_locked(owner: User, host_id: int) -> Host:
    host = Host.objects.select_for_update().filter(pk=host_id, owner=owner).first()
    if host is None:
        raise NotFound("no such host")
    return host


def host_pool_join(
    *, owner: User, host_id: int, token: str, now: datetime | None = None
) -> tuple[Host, Organisation]:
    """The host's owner joins the host to the pool the token was issued for.

    Joins the caller's transaction: locks the host row, then claims the token with a
    conditional UPDATE (unused, unexpired), so one token joins one host once. A bad, used or
    expired token (400 ``invalid_token``) or a host already in a pool (409) changes nothing.
    A hidden pool's host becomes private to it; a visible pool's keeps its visibility.
    """
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        host = _owned_host_locked(owner, host_id)
        found = PoolEnrollmentToken.objects.filter(prefix=token[:PREFIX_LENGTH]).first()
        if found is None or not secret_matches(token, found.digest):
            raise _invalid_token("not a pool token")
        if host.organisation_id == found.organisation_id:
            raise Conflict("the host is in this pool already", code="already_in_pool")
        if host.organisation_id is not None:
            raise Conflict(
                f"the host is in pool #{host.organisation_id}: leave it first",
                code="already_in_pool",
            )
        claimed = PoolEnrollmentToken.objects.filter(
            pk=found.pk, used_at__isnull=True, expires_at__gt=now
        ).update(used_at=now, host=host)
        if not claimed:
            found.refresh_from_db(fields=["used_at"])
            raise _invalid_token(
                "this pool token was already used"
                if found.used_at is not None
                else "this pool token has expired"
            )
        organisation = Organisation.objects.get(pk=found.organisation_id)
        host.organisation = organisation
        if organisation.pool_hidden:
            host.visibility = HostVisibility.PRIVATE
        host.save(update_fields=["organisation", "visibility"])
        return host, organisation


def host_pool_leave(*, owner: User, host_id: int) -> tuple[Host, int]:
    """The host's owner takes the host out of its pool; it is public again (drain it first
    to take no public work). Returns the host and the pool it left.

    Joins the caller's transaction and locks the host row. Refused (409 ``pool_jobs_open``)
    while the host holds an offer or a run of one of the pool's jobs: they were placed there
    because it was the pool's; it leaves once they ended. Not in a pool: 409 ``not_in_pool``.
    """
    with transaction.atomic(savepoint=False):
        host = _owned_host_locked(owner, host_id)
        pool_id = host.organisation_id
        if pool_id is None:
            raise Conflict("the host is in no pool", code="not_in_pool")
        open_pool_jobs = host.job_attempts.filter(
            status__in=OPEN_ATTEMPT_STATUSES, job__pool_id=pool_id
        ).count()
        if open_pool_jobs:
            raise Conflict(
                f"the host holds {open_pool_jobs} of the pool's jobs: it leaves once they end",
                code="pool_jobs_open",
            )
        host.organisation = None
        host.visibility = HostVisibility.PUBLIC
        host.save(update_fields=["organisation", "visibility"])
        return host, pool_id


def pool_hosts_hide(*, organisation_id: int) -> int:
    """The pool became hidden: its hosts become private to it (they take only its jobs and
    leave the public catalog by ``marketplace.selectors``' rule already; the column says so
    too). How many changed."""
    return Host.objects.filter(
        organisation_id=organisation_id, visibility=HostVisibility.PUBLIC
    ).update(visibility=HostVisibility.PRIVATE)
