"""Appending to a pool's audit trail (jobs.audit_models): the one writer, and what the
job entries record (docs/pools.md, "Audit")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from accounts.models import User
from jobs.audit_models import AuditKind, PoolAuditEvent
from jobs.models import Job, JobInput


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


def files_sha256(files: Iterable[tuple[str, bytes]]) -> str:
    """The digest of a job's inline files, canonical: for each file in path order, its UTF-8
    path, a NUL, its length in decimal, a NUL, its bytes (unambiguous, order-free)."""
    digest = hashlib.sha256()
    for path, content in sorted(files, key=lambda file: file[0]):
        digest.update(path.encode() + b"\0" + str(len(content)).encode() + b"\0")
        digest.update(content)
    return digest.hexdigest()


def requirements_sha256(requirements: list[str]) -> str:
    """The digest of the requirements as canonical JSON (no spaces, in the order given: pip
    reads them in order)."""
    canonical = json.dumps(requirements, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _input_reference(row: JobInput) -> dict[str, Any]:
    reference: dict[str, Any] = {"path": row.path, "sha256": row.sha256, "size": row.size}
    if row.url:
        reference["url"] = row.url
    return reference


def job_submitted_audit(job: Job, files: Iterable[tuple[str, bytes]]) -> None:
    """A pool job was created (a submit, or a group's task): who, what code (its files'
    digest, its archive's), what requirements, which data. In the creating transaction;
    nothing for a job outside a pool."""
    if job.pool_id is None:
        return
    inputs = job.inputs.order_by("path")
    audit_append(
        organisation_id=job.pool_id,
        kind=AuditKind.JOB_SUBMITTED,
        actor=job.owner,
        job_id=job.pk,
        detail={
            "name": job.name,
            "entrypoint": job.entrypoint,
            "files_sha256": files_sha256(files),
            "code_archive_sha256": job.code_archive_sha256 or None,
            "requirements_sha256": requirements_sha256(list(job.requirements)),
            "inputs": [_input_reference(row) for row in inputs],
            "group_id": job.group_id,
            "task_index": job.task_index,
        },
    )


def job_finished_audit(job_id: int) -> None:
    """A pool job ended and settled: its status, exit code and final cost (what it was
    charged, after any lost attempt's refund). Called by the settle, in its transaction."""
    job = (
        Job.objects.filter(pk=job_id, pool__isnull=False)
        .values("pool_id", "host_id", "status", "status_reason", "exit_code", "cost_micros")
        .first()
    )
    if job is None:
        return
    audit_append(
        organisation_id=job["pool_id"],
        kind=AuditKind.JOB_FINISHED,
        job_id=job_id,
        host_id=job["host_id"],
        detail={
            "status": job["status"],
            "reason": job["status_reason"],
            "exit_code": job["exit_code"],
            "cost_micros": job["cost_micros"],
        },
    )
