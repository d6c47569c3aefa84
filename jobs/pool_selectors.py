"""Reads of a pool: its audit trail, for its admins (docs/pools.md, "Audit")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from accounts.models import MembershipRole, Organisation, User
from accounts.selectors import membership_of
from config.errors import PermissionDenied
from jobs.audit_models import PoolAuditEvent


@dataclass(frozen=True)
class AuditFilters:
    job_id: int | None = None
    kind: str | None = None
    since: datetime | None = None  # ?from=, inclusive
    until: datetime | None = None  # ?to=, exclusive


def pool_admin_organisation(user: User, organisation_id: int) -> Organisation:
    """The organisation, for one of its admins: 404 for anyone outside it, 403 for a member
    (a steward too) without the admin role."""
    membership = membership_of(user, organisation_id)
    if membership.role != MembershipRole.ADMIN:
        raise PermissionDenied("Only an admin of this organisation can read its audit trail.")
    return membership.organisation


def pool_audit_events(
    *, user: User, organisation_id: int, filters: AuditFilters
) -> QuerySet[PoolAuditEvent]:
    """The trail's entries that match, newest first (by id: the order they were written)."""
    organisation = pool_admin_organisation(user, organisation_id)
    events = PoolAuditEvent.objects.filter(organisation=organisation).select_related("actor")
    if filters.job_id is not None:
        events = events.filter(job_id=filters.job_id)
    if filters.kind is not None:
        events = events.filter(kind=filters.kind)
    if filters.since is not None:
        events = events.filter(at__gte=filters.since)
    if filters.until is not None:
        events = events.filter(at__lt=filters.until)
    return events.order_by("-id")
