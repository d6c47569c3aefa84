"""Submitting a job: validate at the edge, create it with its files, hold its cap, offer it."""

from __future__ import annotations

import base64
import json
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Membership, User
from agent.protocol import MAX_MESSAGE_BYTES
from agent.protocol import JobFile as WireFile
from blobs.models import Blob, BlobHolding
from blobs.selectors import blobs_held
from config.errors import Conflict, TooLarge, ValidationFailed
from hosts.models import Host
from jobs.billing import job_hold_place, pool_runs_free
from jobs.code_archive import code_archive_paths
from jobs.inputs import InputSpec, PoolFetchRules, inputs_check, pool_fetch_rules
from jobs.models import InputSource, Job, JobFile, JobInput, JobStatus, PlacementMode
from jobs.services.audit import job_submitted_audit
from jobs.services.dispatch import input_ref, job_offer_next
from jobs.validation import (
    JobSubmission,
    SubmittedFile,
    refusals_merge,
    requirements_check,
    submission_files,
)
from marketplace.disk import DiskLimits, DiskRequest, disk_check
from marketplace.placement import (
    Candidate,
    JobSpec,
    disk_needed_mb,
    hosts_rank,
    minimum_cap_micros,
    misfit_reason,
)
from marketplace.placement_selectors import placement_candidate, placement_candidates

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Checked:
    """Everything the submit checked, ready to be written."""

    files: list[SubmittedFile]
    entrypoint: str
    requirements: list[str]
    disk: DiskLimits
    inputs: list[JobInput] = field(default_factory=list)  # unsaved, without their job
    archive: BlobHolding | None = None
    holdings: list[BlobHolding] = field(default_factory=list)  # touched: last used now

    @property
    def inputs_bytes(self) -> int:
        archive = self.archive.blob.size if self.archive is not None else 0
        return sum(i.size or 0 for i in self.inputs) + archive


def job_submit(*, owner: User, submission: JobSubmission) -> Job:
    """Validate everything, then create the job and its files, hold its cap and offer it.

    One unit of work in the caller's transaction (the submit view's, ``durable``): the job,
    its files, the hold (wallet -> escrow through ledger.hold_place, keyed by the job) and the
    first offer's attempt commit together or not at all. A refused hold (402
    InsufficientCredits) or any other error leaves nothing: no job, no ledger rows. A job no
    host takes at once stays queued for the reaper. The offer reaches the agent after commit.
    An auto-placed job is offered among the hosts its check just read (one read of them a
    submit).
    """
    accepted = job_submission_check(owner=owner, submission=submission)
    with transaction.atomic(savepoint=False):  # the caller's transaction, else its own
        job = _job_create(owner, submission, accepted.spec, accepted.checked)
        job_hold_place(job)
        job_offer_next(job.pk, candidates=accepted.candidates)
    job.refresh_from_db()
    return job


@dataclass(frozen=True)
class SubmissionChecked:
    """A submission that passed every check: its placement spec and what is to be written."""

    spec: JobSpec
    checked: _Checked
    # Auto placement: the hosts the job may go to, as the check read them (None: a chosen host).
    candidates: list[Candidate] | None = None


def job_submission_check(
    *,
    owner: User,
    submission: JobSubmission,
    extra_inputs: Sequence[JobInput] = (),
    extra_inputs_bytes: int = 0,
) -> SubmissionChecked:
    """Every check of a submit (docs/jobs.md, "Submitting"), every bad field named; writes
    nothing (reads the holdings, the store's archive and the hosts).

    A job group checks its template with it (``jobs.services.group_create``): ``extra_inputs``
    are the most inputs one task adds (counted in the offer's size) and ``extra_inputs_bytes``
    the most bytes one task adds (counted in the disk a host must allow).
    """
    spec = JobSpec(
        cpus=Decimal(submission.cpus),
        memory_mb=submission.memory_mb,
        gpus=submission.gpus,
        timeout_seconds=submission.timeout_seconds,
    )
    checked = _inputs_check(owner, submission, spec)
    _offer_size_check(checked, extra_inputs)
    spec = JobSpec(
        cpus=spec.cpus,
        memory_mb=spec.memory_mb,
        gpus=spec.gpus,
        timeout_seconds=spec.timeout_seconds,
        disk_mb=disk_needed_mb(
            work_mb=checked.disk.work_mb,
            outputs_mb=checked.disk.outputs_mb,
            tmp_mb=checked.disk.tmp_mb,
            inputs_bytes=checked.inputs_bytes + extra_inputs_bytes,
        ),
    )
    _pool_check(owner, submission.pool_id)
    candidates = _placement_check(owner, spec, submission)
    return SubmissionChecked(spec, checked, candidates)


def _inputs_check(owner: User, submission: JobSubmission, spec: JobSpec) -> _Checked:
    """The files, the inputs, the requirements and the limits, every bad one named at once
    (docs/api.md).

    One problem keeps its own code (``invalid_path``, ``unknown_blob`` ...); several are 400
    ``invalid`` with each message and each field. A 413 (``TooLarge``) is raised at once.
    """
    refusals: list[ValidationFailed] = []
    files: list[SubmittedFile] = []
    entrypoint = ""
    inputs: list[JobInput] = []
    holdings: list[BlobHolding] = []
    disk = _attempt(refusals, lambda: disk_check(submission.disk or DiskRequest()))
    archive = _attempt(refusals, lambda: _archive_held(owner, submission.archive_sha256))
    paths = None
    if archive is not None and disk is not None:
        paths = _attempt(refusals, lambda: code_archive_paths(archive.blob, work_mb=disk.work_mb))
    found = _attempt(refusals, lambda: submission_files(submission, paths))
    files, entrypoint = found or (files, entrypoint)
    requirements = _attempt(refusals, lambda: requirements_check(submission.requirements)) or []
    pool = pool_fetch_rules(owner.pk, submission.pool_id)
    resolved = _attempt(refusals, lambda: _inputs_resolve(owner, submission.inputs, pool))
    if resolved is not None:
        inputs, holdings = resolved
    _attempt(refusals, lambda: _limits_check(spec, submission.max_cost_micros))
    if refusals:
        raise refusals_merge(refusals)
    assert disk is not None
    if archive is not None:
        holdings.append(archive)
    return _Checked(files, entrypoint, requirements, disk, inputs, archive, holdings)


# An offer's envelope, limits, rates and requirements take well under this.
_OFFER_OVERHEAD_BYTES = 16 * 1024


def _offer_size_check(checked: _Checked, extra: Sequence[JobInput] = ()) -> None:
    """The offer must fit one protocol message (MAX_MESSAGE_BYTES): inline files travel in
    base64 and each input with its fetch URL (an S3 store's presigned ones are long), so
    many inputs with many files may not. Measured on the URLs the store would give now."""
    refs = [input_ref(row, "attempt:999999999999") for row in [*checked.inputs, *extra]]
    files = [
        WireFile(path=f.path, content_b64=base64.b64encode(f.content).decode())
        for f in checked.files
    ]
    size = len(json.dumps([refs, files], separators=(",", ":"))) + _OFFER_OVERHEAD_BYTES
    if size > MAX_MESSAGE_BYTES:
        raise TooLarge(
            f"the inputs and files need {size} bytes of the offer's {MAX_MESSAGE_BYTES}",
            code="offer_too_large",
            fields={"inputs": ["too many inputs with these files: put them in an archive"]},
        )


def _attempt(refusals: list[ValidationFailed], check: Callable[[], _T]) -> _T | None:
    """Run one check; a 400 joins the others (None), a 413 and anything else goes up."""
    try:
        return check()
    except ValidationFailed as exc:
        refusals.append(exc)
        return None


def _archive_held(owner: User, sha256: str | None) -> BlobHolding | None:
    if sha256 is None:
        return None
    holding = blobs_held(owner, [sha256]).get(sha256)
    if holding is None:
        raise ValidationFailed(
            "you hold no blob with that archive_sha256",
            code="unknown_blob",
            fields={"archive_sha256": ["you hold no blob with this sha256: upload it first"]},
        )
    return holding


def _inputs_resolve(
    owner: User, raw: tuple[object, ...], pool: PoolFetchRules | None = None
) -> tuple[list[JobInput], list[BlobHolding]]:
    """The inputs as unsaved rows: store ones must be held by the owner (``unknown_blob``, the
    same answer whether someone else holds the digest or nobody does), URL ones public https
    or inside the job's pool's rules (``address_not_allowed``), all within the count and the
    byte cap (413 ``inputs_too_large``)."""
    specs = inputs_check(raw, pool)
    held = blobs_held(owner, [s.sha256 for s in specs if s.url is None])
    refusals = [
        ValidationFailed(
            f"inputs[{i}].sha256: you hold no blob with this sha256",
            code="unknown_blob",
            fields={f"inputs[{i}].sha256": ["you hold no blob with this sha256: upload it first"]},
        )
        for i, s in enumerate(specs)
        if s.url is None and s.sha256 not in held
    ]
    if refusals:
        raise refusals_merge(refusals)
    rows = [_input_row(s, held.get(s.sha256)) for s in specs]
    total = sum(row.size or 0 for row in rows)
    if total > settings.JOB_INPUTS_MAX_BYTES:
        raise TooLarge(
            f"the inputs add up to {total} bytes, more than {settings.JOB_INPUTS_MAX_BYTES}",
            code="inputs_too_large",
            fields={"inputs": [f"more than {settings.JOB_INPUTS_MAX_BYTES} bytes in all"]},
        )
    holdings = list({s.sha256: held[s.sha256] for s in specs if s.url is None}.values())
    return rows, holdings


def _input_row(spec: InputSpec, holding: BlobHolding | None) -> JobInput:
    if spec.url is not None:
        return JobInput(
            path=spec.path, sha256=spec.sha256, size=spec.size, source=InputSource.URL, url=spec.url
        )
    assert holding is not None
    blob: Blob = holding.blob
    return JobInput(
        path=spec.path, sha256=spec.sha256, size=blob.size, source=InputSource.STORE, blob=blob
    )


def _pool_check(owner: User, pool_id: int | None) -> None:
    """A pool is an organisation the owner belongs to (the same answer whether it exists).

    Without a pool, no organisation of the owner may require its members to use their pool
    (``pool_required``, 400 naming every such one). Any pool of the owner's satisfies the
    rule, which keeps their jobs off the public marketplace (docs/pools.md, "The model").
    """
    if pool_id is None:
        requiring = list(
            Membership.objects.filter(user=owner, organisation__pool_required=True)
            .order_by("organisation_id")
            .values_list("organisation_id", "organisation__name")
        )
        if requiring:
            names = ", ".join(f"#{pk} {name}" for pk, name in requiring)
            raise ValidationFailed(
                f"your organisation requires its members' jobs to run in its pool: {names}",
                code="pool_required",
                fields={"pool": [f"required: one of {names}"]},
            )
        return
    if not Membership.objects.filter(user=owner, organisation_id=pool_id).exists():
        raise ValidationFailed(
            "no such pool",
            code="unknown_pool",
            fields={"pool": [f"no pool #{pool_id} that you belong to"]},
        )


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


def _placement_check(
    owner: User, spec: JobSpec, submission: JobSubmission
) -> list[Candidate] | None:
    """The chosen host, or at least one host for auto placement, takes this job and cap now;
    in a pool, only the pool's hosts count (``marketplace.selectors.hosts_placeable``). Returns
    auto placement's candidates (the offer chooses among them), None for a chosen host.

    A member's job in a pool that runs its members free needs no minimum cap: it runs at zero
    rates (``jobs.billing.attempt_rates``), any cap of at least 1 will do."""
    cap, pool_id = submission.max_cost_micros, submission.pool_id
    is_free = pool_runs_free(pool_id, owner.pk)
    if submission.host_id is not None:
        try:
            chosen = placement_candidate(owner, submission.host_id, pool_id=pool_id)
        except Host.DoesNotExist:
            where = "that you may use" if pool_id is None else f"in pool #{pool_id}"
            raise ValidationFailed(
                "no such host",
                code="unknown_host",
                fields={"host": [f"no host #{submission.host_id} {where}"]},
            ) from None
        why_not = misfit_reason(spec, chosen)
        if why_not is not None:
            raise ValidationFailed(
                f"host #{chosen.host_id} can't take this job: {why_not}",
                code="host_unfit",
                fields={"host": [why_not]},
            )
        _cap_check(cap, 0 if is_free else minimum_cap_micros(spec, chosen.rates))
        return None
    candidates = placement_candidates(owner, pool_id=pool_id)
    fitting = hosts_rank(spec, candidates)
    if not fitting:
        where = "that you may use" if pool_id is None else f"of pool #{pool_id}"
        raise Conflict(f"no online host {where} fits this job now", code="no_host_fits")
    if not is_free:
        _cap_check(cap, min(minimum_cap_micros(spec, r.candidate.rates) for r in fitting))
    return candidates


def _cap_check(cap: int, minimum: int) -> None:
    if cap < minimum:
        raise ValidationFailed(
            f"max_cost_micros must cover at least one minute at the host's rates ({minimum})",
            code="cap_too_low",
            fields={"max_cost_micros": [f"at least {minimum}"]},
        )


def holdings_touch(holdings: list[BlobHolding]) -> None:
    """Mark the holdings the job uses as used now (retention counts from the last job).

    The UPDATE locks them until the submit commits, so the blob store's collector can't drop
    one (and then its blob) under a job being created; one it dropped between the check and
    here is missing from the count, and the submit is refused as for a blob never held.
    """
    pks = {holding.pk for holding in holdings}  # the archive may be an input too
    touched = BlobHolding.objects.filter(pk__in=pks).update(last_used_at=timezone.now())
    if touched != len(pks):
        raise ValidationFailed(
            "a blob the job names was removed while it was submitted",
            code="unknown_blob",
            fields={"inputs": ["a blob you named is no longer yours: upload it again"]},
        )


def _job_create(owner: User, submission: JobSubmission, spec: JobSpec, checked: _Checked) -> Job:
    """The job, its files and inputs, after locking the holdings it uses (``holdings_touch``)."""
    entrypoint, archive = checked.entrypoint, checked.archive
    holdings_touch(checked.holdings)
    job = Job.objects.create(
        owner=owner,
        placement=PlacementMode.AUTO if submission.host_id is None else PlacementMode.CHOSEN,
        requested_host_id=submission.host_id,
        status=JobStatus.QUEUED,
        status_reason="waiting for a host",
        max_attempts=settings.JOB_MAX_ATTEMPTS,
        entrypoint=entrypoint,
        name=submission.name or posixpath.basename(entrypoint),
        requirements=checked.requirements,
        cpus=spec.cpus,
        memory_mb=spec.memory_mb,
        gpus=spec.gpus,
        timeout_seconds=spec.timeout_seconds,
        max_cost_micros=submission.max_cost_micros,
        work_mb=checked.disk.work_mb,
        outputs_mb=checked.disk.outputs_mb,
        tmp_mb=checked.disk.tmp_mb,
        work_exec=submission.work_exec,
        inputs_bytes=checked.inputs_bytes,
        code_archive=archive.blob if archive is not None else None,
        code_archive_sha256=archive.blob.sha256 if archive is not None else "",
        pool_id=submission.pool_id,
    )
    JobFile.objects.bulk_create(
        JobFile(job=job, path=f.path, content=f.content, size=len(f.content)) for f in checked.files
    )
    for row in checked.inputs:
        row.job = job
    JobInput.objects.bulk_create(checked.inputs)
    job_submitted_audit(job, ((f.path, f.content) for f in checked.files))
    return job
