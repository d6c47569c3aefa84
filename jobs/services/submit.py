"""Submitting a job: validate at the edge, create it with its files, hold its cap, offer it."""

from __future__ import annotations

import posixpath
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from accounts.models import User
from config.errors import Conflict, ValidationFailed
from hosts.models import Host
from jobs.billing import job_hold_place
from jobs.models import Job, JobFile, JobStatus, PlacementMode
from jobs.services.dispatch import job_offer_next
from jobs.validation import JobSubmission, SubmittedFile, requirements_check, submission_files
from marketplace.placement import JobSpec, hosts_rank, minimum_cap_micros, misfit_reason
from marketplace.placement_selectors import placement_candidate, placement_candidates


def job_submit(*, owner: User, submission: JobSubmission) -> Job:
    """Validate everything, then create the job and its files, hold its cap and offer it.

    One unit of work in the caller's transaction (the submit view's, ``durable``): the job,
    its files, the hold (wallet -> escrow through ledger.hold_place, keyed by the job) and the
    first offer's attempt commit together or not at all. A refused hold (402
    InsufficientCredits) or any other error leaves nothing: no job, no ledger rows. A job no
    host takes at once stays queued for the reaper. The offer reaches the agent after commit.
    """
    spec = JobSpec(
        cpus=Decimal(submission.cpus),
        memory_mb=submission.memory_mb,
        gpus=submission.gpus,
        timeout_seconds=submission.timeout_seconds,
    )
    files, entrypoint, requirements = _inputs_check(submission, spec)
    _placement_check(owner, spec, submission)
    with transaction.atomic(savepoint=False):  # the caller's transaction, else its own
        job = _job_create(owner, submission, spec, entrypoint, requirements, files)
        job_hold_place(job)
        job_offer_next(job.pk)
    job.refresh_from_db()
    return job


def _inputs_check(
    submission: JobSubmission, spec: JobSpec
) -> tuple[list[SubmittedFile], str, list[str]]:
    """The files, the requirements and the limits, every bad one named at once (docs/api.md).

    One problem keeps its own code (``invalid_path``, ``invalid_requirement`` ...); several are
    400 ``invalid`` with each message and each field. A 413 (``TooLarge``) is raised at once.
    """
    refusals: list[ValidationFailed] = []
    files: list[SubmittedFile] = []
    entrypoint, requirements = "", []
    try:
        files, entrypoint = submission_files(submission)
    except ValidationFailed as exc:
        refusals.append(exc)
    try:
        requirements = requirements_check(submission.requirements)
    except ValidationFailed as exc:
        refusals.append(exc)
    try:
        _limits_check(spec, submission.max_cost_micros)
    except ValidationFailed as exc:
        refusals.append(exc)
    if len(refusals) == 1:
        raise refusals[0]
    if refusals:
        fields: dict[str, list[str]] = {}
        for refusal in refusals:
            for name, messages in refusal.fields.items():
                fields.setdefault(name, []).extend(messages)
        raise ValidationFailed("; ".join(r.message for r in refusals), fields=fields)
    return files, entrypoint, requirements


def _limits_check(spec: JobSpec, max_cost_micros: int) -> None:
    problems = {
        "cpus": spec.cpus <= 0,
        "memory_mb": spec.memory_mb <= 0,
        "gpus": spec.gpus < 0,
        "timeout_seconds": not 0 < spec.timeout_seconds <= settings.JOB_MAX_TIMEOUT_SECONDS,
        "max_cost_micros": max_cost_micros <= 0,
    }
    bad = [name for name, is_bad in problems.items() if is_bad]
    if bad:
        raise ValidationFailed(
            f"{', '.join(bad)} out of range",
            code="invalid_limits",
            fields={n: ["out of range"] for n in bad},
        )


def _placement_check(owner: User, spec: JobSpec, submission: JobSubmission) -> None:
    """The chosen host, or at least one host for auto placement, takes this job and cap now."""
    cap = submission.max_cost_micros
    if submission.host_id is not None:
        try:
            chosen = placement_candidate(owner, submission.host_id)
        except Host.DoesNotExist:
            raise ValidationFailed(
                "no such host",
                code="unknown_host",
                fields={"host": [f"no host #{submission.host_id} that you may use"]},
            ) from None
        why_not = misfit_reason(spec, chosen)
        if why_not is not None:
            raise ValidationFailed(
                f"host #{chosen.host_id} can't take this job: {why_not}",
                code="host_unfit",
                fields={"host": [why_not]},
            )
        _cap_check(cap, minimum_cap_micros(spec, chosen.rates))
        return
    fitting = hosts_rank(spec, placement_candidates(owner))
    if not fitting:
        raise Conflict("no online host that you may use fits this job now", code="no_host_fits")
    _cap_check(cap, min(minimum_cap_micros(spec, r.candidate.rates) for r in fitting))


def _cap_check(cap: int, minimum: int) -> None:
    if cap < minimum:
        raise ValidationFailed(
            f"max_cost_micros must cover at least one minute at the host's rates ({minimum})",
            code="cap_too_low",
            fields={"max_cost_micros": [f"at least {minimum}"]},
        )


def _job_create(
    owner: User,
    submission: JobSubmission,
    spec: JobSpec,
    entrypoint: str,
    requirements: list[str],
    files: list[SubmittedFile],
) -> Job:
    job = Job.objects.create(
        owner=owner,
        placement=PlacementMode.AUTO if submission.host_id is None else PlacementMode.CHOSEN,
        requested_host_id=submission.host_id,
        status=JobStatus.QUEUED,
        status_reason="waiting for a host",
        max_attempts=settings.JOB_MAX_ATTEMPTS,
        entrypoint=entrypoint,
        name=submission.name or posixpath.basename(entrypoint),
        requirements=requirements,
        cpus=spec.cpus,
        memory_mb=spec.memory_mb,
        gpus=spec.gpus,
        timeout_seconds=spec.timeout_seconds,
        max_cost_micros=submission.max_cost_micros,
    )
    JobFile.objects.bulk_create(
        JobFile(job=job, path=f.path, content=f.content, size=len(f.content)) for f in files
    )
    return job
