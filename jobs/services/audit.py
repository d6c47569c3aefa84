"""Appending to a pool's audit trail (jobs.audit_models): the one writer."""

from __future__ import annotations

from typing import Any

from accounts.models import User
from jobs.audit_models import AuditKind, PoolAuditEvent


def audit_append(
    *,
    organisation_id: int,
    kind: AuditKind,
    actor: User | None = None,
    job_id: int | None = None,
    host_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> PoolAuditEvent:
    """Append one entry, in the caller's transaction (it commits or vanishes with what it
    records)."""
    return PoolAuditEvent.objects.create(
        organisation_id=organisation_id,
        kind=kind,
        actor=actor,
        job_id=job_id,
        host_id=host_id,
        detail=detail or {},
    )
