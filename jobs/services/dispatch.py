"""Dispatch: offering queued jobs to hosts, reverting expired offers, losing expired leases.

These run in the caller's transaction (an agent message's, a reaper step's, the submit's;
``config.transactions``); each keeps its own ``atomic`` block, a savepoint there, so a refused
move (IllegalTransition) that its caller catches undoes only its own writes. Lock order,
everywhere: the job row first (``SELECT … FOR UPDATE`` or the conditional UPDATE of
``job_transition``), then its attempt row. The deciding write is always a conditional UPDATE,
so a reaper racing a late ``job.accept`` (or another reaper) sees zero rows and backs off.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Organisation
from agent.protocol import DiskLimits, InputRef, JobLimits, JobOffer, PoolRef, PoolStore, TaskRef
from agent.protocol import JobFile as WireFile
from blobs.models import Blob
from blobs.urls_for_agents import blob_fetch_url
from hosts.models import Host, HostStatus, rates_columns
from hosts.services import host_fault_record, host_job_outcome_record
from jobs import agent_link
from jobs.billing import attempt_charges_reverse, attempt_rates, job_settle
from jobs.models import (
    AttemptStatus,
    Job,
    JobAttempt,
    JobGroupHostExclusion,
    JobHostRejection,
    JobInput,
    JobStatus,
    PlacementMode,
    RejectionKind,
)
from jobs.selectors import candidates_loaded, job_spec
from jobs.states import (
    ACTIVE,
    ATTEMPT_ACTIVE,
    ATTEMPT_OPEN,
    FINAL,
    IllegalTransition,
    attempt_transition,
    job_transition,
)
from marketplace.placement import (
    BUSY_REASON,
    DISK_REASON_MARK,
    Candidate,
    JobSpec,
    hosts_rank,
    misfit_reason,
)
from marketplace.placement_selectors import placement_candidate, placement_candidates

_REAP_BATCH = 100


@dataclass(frozen=True)
class _Target:
    candidate: Candidate | None
    why_not: str = ""
    is_permanent: bool = False


# What each kind of rejection means for placement (most lasting first: a host's record for a
# job only ever moves up this list).
_LASTING = [
    RejectionKind.REFUSED,
    RejectionKind.HOST_FAULT,
    RejectionKind.LOST,
    RejectionKind.EXPIRED,
    RejectionKind.BUSY,
]
_SOFT = {RejectionKind.HOST_FAULT, RejectionKind.LOST}  # other hosts first, this one if none
_BRIEF = {RejectionKind.EXPIRED, RejectionKind.BUSY}  # not for JOB_REOFFER_AFTER_SECONDS


def job_offer_next(
    job_id: int, *, now: datetime | None = None, candidates: Sequence[Candidate] | None = None
) -> JobAttempt | None:
    """Offer a queued job to the best host that has room for it and has not refused it.

    Locks the job row, so concurrent dispatchers make one offer. The offer is sent to the
    agent after commit. A job no host can take now waits, saying why (``waiting_reason``),
    until capacity frees (``jobs.services.capacity``, the reaper's tick),
    JOB_QUEUE_TIMEOUT_SECONDS passes, or at once when every host that could ever take it has
    refused it.

    ``candidates``: an auto-placed job's ``placement_candidates``, as the caller read them a
    moment ago in this transaction's entry point (the submit's check); None reads them here.
    Either way the room on each is read here (``candidates_loaded``), under the job's lock.
    """
    now = now or timezone.now()
    with transaction.atomic():
        job = (
            # of=self: lock the job row only, not the owner's user row joined in.
            Job.objects.select_for_update(of=("self",))
            .select_related("owner", "group", "pool")
            .filter(pk=job_id, status=JobStatus.QUEUED)
            .first()
        )
        if job is None:
            return None
        target = _placement_target(job, now, candidates)
        if target.candidate is not None:
            return _offer_create(job, target.candidate, now)
        if _unplaceable_fail(job, target, now):
            job_settle(job_id)
        elif job.waiting_reason != target.why_not:
            Job.objects.filter(pk=job.pk).update(waiting_reason=target.why_not[:300])
    return None


def _rejections(job: Job, now: datetime) -> dict[int, RejectionKind]:
    """The hosts this job holds something against now (brief ones only while they last)."""
    brief_since = now - timedelta(seconds=settings.JOB_REOFFER_AFTER_SECONDS)
    return {
        host_id: RejectionKind(kind)
        for host_id, kind, at in job.rejections.values_list("host_id", "kind", "created_at")
        if kind not in _BRIEF or at > brief_since
    }


def _placement_target(
    job: Job, now: datetime, candidates: Sequence[Candidate] | None = None
) -> _Target:
    spec = job_spec(job)
    rejections = _rejections(job, now)
    if job.placement == PlacementMode.CHOSEN:
        assert job.requested_host_id is not None
        try:
            chosen = placement_candidate(
                job.owner, job.requested_host_id, pool_id=job.pool_id, now=now
            )
        except Host.DoesNotExist:
            return _Target(None, "the chosen host is gone", is_permanent=True)
        # (An offer it let expire is made again at once: the offer's TTL spaced them already.)
        if rejections.get(chosen.host_id) == RejectionKind.BUSY:
            return _Target(None, f"waiting for the chosen host: {BUSY_REASON}")
        [chosen] = candidates_loaded([chosen])
        why_not = misfit_reason(spec, chosen)
        if why_not is None:
            return _Target(chosen)
        return _Target(None, f"waiting for the chosen host: {why_not}")
    refused = {h for h, kind in rejections.items() if kind == RejectionKind.REFUSED}
    # A host that lost or faulted a task of the job's group gets none of its tasks again.
    refused |= _group_exclusions(job)
    brief = {h for h, kind in rejections.items() if kind in _BRIEF}
    soft = {h for h, kind in rejections.items() if kind in _SOFT}
    budget = job.max_cost_micros - job.cost_micros
    if candidates is None:
        candidates = placement_candidates(job.owner, pool_id=job.pool_id, now=now)
    loaded = candidates_loaded(candidates)
    ranked = hosts_rank(spec, loaded, max_cost_micros=budget, exclude=refused | brief | soft)
    ranked = ranked or hosts_rank(spec, loaded, max_cost_micros=budget, exclude=refused | brief)
    if ranked:
        return _Target(ranked[0].candidate)
    # Hosts that are offline, unavailable, not ready or busy for now may take it later; only
    # when every host that could ever take it refused it is the failure permanent.
    someday = [
        dataclasses.replace(c, is_online=True, is_available=True, is_draining=False, is_ready=True)
        for c in candidates
    ]
    could_ever = hosts_rank(spec, someday, max_cost_micros=budget, exclude=refused)
    if not could_ever and refused:
        why = "every host that fits refused the job"
        if job.group_id is not None:
            why += " or lost a task of its group"
        return _Target(None, why, is_permanent=True)
    why = _waiting_reason(spec, loaded, refused, brief)
    if job.pool_id is not None:
        # It never falls back to hosts outside the pool: say which hosts it waits for.
        why = why.replace("waiting for a host", f"waiting for a host of pool #{job.pool_id}", 1)
    return _Target(None, why)


def _group_exclusions(job: Job) -> set[int]:
    if job.group_id is None:
        return set()
    rows = JobGroupHostExclusion.objects.filter(group_id=job.group_id)
    return set(rows.values_list("host_id", flat=True))


def group_host_exclude(group_id: int, host_id: int, reason: str) -> None:
    """The host lost or faulted a task of the group (``attempt_lose``, a ``host_fault``
    rejection): it is offered none of the group's tasks again. Repeating it changes nothing."""
    JobGroupHostExclusion.objects.get_or_create(
        group_id=group_id, host_id=host_id, defaults={"reason": reason[:500]}
    )


def _waiting_reason(
    spec: JobSpec, loaded: list[Candidate], refused: set[int], brief: set[int]
) -> str:
    """Why a job waits, in the renter's words: what it waits for."""
    reasons = [
        BUSY_REASON if c.host_id in brief else misfit_reason(spec, c)
        for c in loaded
        if c.host_id not in refused
    ]
    need = f"{Decimal(spec.cpus).normalize():f} CPUs and {spec.memory_mb} MB of memory"
    if spec.gpus:
        need += f" and {spec.gpus} GPUs"
    busy = reasons.count(BUSY_REASON)
    if busy:
        hosts = "the one host that fits is" if busy == 1 else f"all {busy} hosts that fit are"
        return f"waiting for a host with {need} free: {hosts} busy"
    if any(r is not None and r.startswith("the host is not") for r in reasons):
        return f"waiting for a host with {need} to become available or ready"
    if reasons and all(r is not None and DISK_REASON_MARK in r for r in reasons):
        # Every host's allowance is too small: coming online wouldn't help them.
        return f"waiting for a host that allows {spec.disk_mb} MB of disk a job"
    return f"waiting for a host with {need} to come online"


def _unplaceable_fail(job: Job, target: _Target, now: datetime) -> bool:
    """Fail a job nobody can take: at once when permanent, else after the queue timeout."""
    waited = now - job.queued_at
    if not target.is_permanent and waited < timedelta(seconds=settings.JOB_QUEUE_TIMEOUT_SECONDS):
        return False
    reason = target.why_not
    if not target.is_permanent:
        reason = f"no host took the job within {settings.JOB_QUEUE_TIMEOUT_SECONDS} s ({reason})"
    job_transition(job, JobStatus.FAILED, reason, expected_from=[JobStatus.QUEUED])
    return True


def _offer_create(job: Job, target: Candidate, now: datetime) -> JobAttempt:
    number = job.attempt + 1
    # Zero for a member's job on its pool's own host where the pool runs its members free.
    rates = attempt_rates(job, target.host_id, target.rates)
    attempt = JobAttempt.objects.create(
        job=job,
        number=number,
        host_id=target.host_id,
        offer_expires_at=now + timedelta(seconds=settings.JOB_OFFER_TTL_SECONDS),
        **rates_columns(rates),
    )
    job_transition(
        job,
        JobStatus.OFFERED,
        f"offered to host {target.name} (#{target.host_id})",
        expected_from=[JobStatus.QUEUED],
        at_attempt=job.attempt,
        attempt=number,
        host_id=target.host_id,
        **rates_columns(rates),
        allow_network=target.allow_network,
    )
    offer = offer_build(job, attempt)
    transaction.on_commit(lambda: agent_link.agent_send(target.host_id, "job.offer", offer))
    return attempt


def pool_ref(pool: Organisation) -> PoolRef:
    """The pool's settings as the agent needs them for one of its jobs (docs/pools.md)."""
    ref = PoolRef(
        id=pool.pk,
        fetch_networks=list(pool.pool_fetch_networks),
        fetch_hosts=list(pool.pool_fetch_hosts),
        job_networks=list(pool.pool_job_networks),
        logs=pool.pool_logs,  # type: ignore[typeddict-item]
        airlock=pool.pool_airlock,
    )
    store = pool.pool_output_store
    if store:
        ref["output_store"] = PoolStore(
            endpoint_url=store["endpoint_url"],
            bucket=store["bucket"],
            prefix=store.get("prefix", ""),
            region=store.get("region", ""),
        )
    return ref


def offer_build(job: Job, attempt: JobAttempt) -> JobOffer:
    """The job.offer message for this attempt (files inline, base64; inputs and the code
    archive as references, each store blob with a fresh fetch URL bound to this attempt)."""
    files = [
        WireFile(path=f.path, content_b64=base64.b64encode(bytes(f.content)).decode())
        for f in job.files.order_by("path")
    ]
    scope = f"attempt:{attempt.pk}"
    offer = JobOffer(
        job_id=job.pk,
        attempt=attempt.number,
        offer_expires_at=attempt.offer_expires_at.isoformat(),
        entrypoint=job.entrypoint,
        files=files,
        requirements=list(job.requirements),
        limits=JobLimits(
            cpus=float(job.cpus),
            memory_mb=job.memory_mb,
            gpus=job.gpus,
            timeout_seconds=job.timeout_seconds,
            allow_network=job.allow_network,
        ),
        rates=rates_columns(job.rates),
        max_cost_micros=job.max_cost_micros,
        charged_micros=job.cost_micros,
        inputs=[input_ref(i, scope) for i in job.inputs.select_related("blob").order_by("path")],
        disk=DiskLimits(
            work_mb=job.work_mb,
            outputs_mb=job.outputs_mb,
            tmp_mb=job.tmp_mb,
            work_exec=job.work_exec,
        ),
    )
    if job.group is not None and job.task_index is not None:
        offer["task"] = TaskRef(index=job.task_index, count=job.group.count)
    if job.pool is not None:
        offer["pool"] = pool_ref(job.pool)
    if job.code_archive_sha256:
        archive = job.code_archive or Blob(sha256=job.code_archive_sha256, size=0)
        offer["code_archive"] = InputRef(
            path="code.zip",
            sha256=archive.sha256,
            size=archive.size,
            source="store",
            url=blob_fetch_url(archive, scope=scope),
        )
    return offer


def input_ref(row: JobInput, scope: str) -> InputRef:
    """One input of the offer; a store blob's URL is made now (short-lived, bound to scope)."""
    if row.source == "url":
        ref = InputRef(path=row.path, sha256=row.sha256, source="url", url=row.url)
    else:
        # The collector keeps a blob an unfinished job reads (blobs.providers); should it be
        # gone all the same, the fetch fails as a missing input, never as another blob.
        blob = row.blob or Blob(sha256=row.sha256, size=row.size or 0)
        ref = InputRef(
            path=row.path, sha256=row.sha256, source="store", url=blob_fetch_url(blob, scope=scope)
        )
    if row.size is not None:
        ref["size"] = row.size
    return ref


def offers_open(host_id: int, *, now: datetime | None = None) -> list[JobOffer]:
    """The offers this host has not answered yet and may still accept (sent again on hello)."""
    now = now or timezone.now()
    attempts = JobAttempt.objects.filter(
        host_id=host_id, status=AttemptStatus.OFFERED, offer_expires_at__gt=now
    ).select_related("job", "job__group", "job__pool")
    return [
        offer_build(a.job, a)
        for a in attempts.order_by("pk")
        if a.job.status == JobStatus.OFFERED and a.job.attempt == a.number
    ]


def host_refusal_record(
    job: Job,
    host_id: int,
    reason: str,
    kind: RejectionKind = RejectionKind.REFUSED,
    *,
    now: datetime | None = None,
) -> None:
    """Remember what this host's no means for the job (``RejectionKind``), so placement moves
    on: a record only moves to a more lasting kind; a brief one is renewed."""
    now = now or timezone.now()
    existing = job.rejections.filter(host_id=host_id).first()
    if existing is None:
        JobHostRejection.objects.create(
            job=job, host_id=host_id, kind=kind, reason=reason[:500], created_at=now
        )
    elif _LASTING.index(kind) <= _LASTING.index(RejectionKind(existing.kind)):
        existing.kind, existing.reason, existing.created_at = kind, reason[:500], now
        existing.save(update_fields=["kind", "reason", "created_at"])


def offer_expire(attempt_id: int, *, now: datetime | None = None) -> bool:
    """Revert an offer the host did not answer in time and offer the job again.

    Locks the job, then expires the attempt with a conditional UPDATE; a job.accept that won
    the race first leaves nothing to expire.
    """
    now = now or timezone.now()
    with transaction.atomic():
        attempt = JobAttempt.objects.filter(pk=attempt_id, status=AttemptStatus.OFFERED).first()
        if attempt is None:
            return False
        job = (
            Job.objects.select_for_update()
            .filter(pk=attempt.job_id, status=JobStatus.OFFERED, attempt=attempt.number)
            .first()
        )
        if job is None:
            return False
        try:
            attempt_transition(
                attempt,
                AttemptStatus.EXPIRED,
                "offer expired",
                offer_expired_at=now,
                finished_at=now,
            )
        except IllegalTransition:
            return False
        host_refusal_record(
            job, attempt.host_id, "did not answer the offer in time", RejectionKind.EXPIRED, now=now
        )
        job_transition(
            job,
            JobStatus.QUEUED,
            f"host #{attempt.host_id} did not answer the offer in time",
            expected_from=[JobStatus.OFFERED],
            at_attempt=attempt.number,
        )
        job_offer_next(attempt.job_id, now=now)
        capacity_offer(attempt.host_id, now=now)
    return True


def attempt_lose(
    attempt_id: int,
    reason: str,
    *,
    now: datetime | None = None,
    lease_expired: bool = True,
    fault_detail: str | None = None,
) -> bool:
    """End an active attempt as lost: requeue the job while retries remain, else fail it.

    Locks the job, then marks the attempt lost with a conditional UPDATE (on the lease still
    being expired, unless ``lease_expired`` is False: the agent said it no longer runs it).
    Counts the loss against the host. A job whose cancel was pending ends cancelled. Moves
    money: the attempt's charges are reversed (jobs.billing).

    ``fault_detail`` (not None) makes it a host fault: the host said it could not prepare,
    start or supervise the container. It counts against the host (``host_fault_record``) and
    against the job's JOB_MAX_HOST_FAULTS, not its JOB_MAX_ATTEMPTS; ``reason`` is the
    renter's sentence, the detail the host owner's.
    """
    now = now or timezone.now()
    with transaction.atomic():
        attempt = JobAttempt.objects.filter(pk=attempt_id, status__in=ATTEMPT_ACTIVE).first()
        if attempt is None:
            return False
        job = (
            Job.objects.select_for_update()
            .filter(pk=attempt.job_id, status__in=ACTIVE, attempt=attempt.number)
            .first()
        )
        if job is None:
            return False
        fault: dict[str, Any] = {}
        if fault_detail is not None:
            fault = {"fault": "host", "fault_detail": fault_detail[:2000]}
        try:
            attempt_transition(
                attempt,
                AttemptStatus.LOST,
                reason,
                lease_expired_at=now if lease_expired else None,
                finished_at=now,
                **fault,
            )
        except IllegalTransition:
            return False
        host_job_outcome_record(host_id=attempt.host_id, is_finished=False)
        if fault_detail is not None:
            host_fault_record(host_id=attempt.host_id, detail=fault_detail or reason, now=now)
        _after_loss(job, attempt, reason, now)
        # The renter pays nothing for work a host lost: give the charges back before the job
        # runs again (its next attempt may use the whole cap) or settles.
        attempt_charges_reverse(attempt_id)
        if job.status == JobStatus.QUEUED:
            job_offer_next(job.pk, now=now)
        else:
            job_settle(job.pk)
        capacity_offer(attempt.host_id, now=now)
    return True


def _after_loss(job: Job, attempt: JobAttempt, reason: str, now: datetime) -> None:
    number = attempt.number
    ended = job.attempts.filter(status=AttemptStatus.LOST)
    if job.group_id is not None:
        # A group's task: its host_fault_retries cover lost and faulted attempts together
        # (job.max_attempts = retries + 1), and the host gets no more of the group's tasks.
        group_host_exclude(job.group_id, attempt.host_id, reason)
        kind = RejectionKind.HOST_FAULT if attempt.fault == "host" else RejectionKind.LOST
        limit, spent = job.max_attempts, ended.count()
        last = "no host-fault retries left"
    elif attempt.fault == "host":
        kind, limit = RejectionKind.HOST_FAULT, settings.JOB_MAX_HOST_FAULTS
        spent = ended.filter(fault="host").count()
        last = f"{spent} hosts could not run the job; nothing was charged"
    else:
        kind, limit = RejectionKind.LOST, job.max_attempts
        spent = ended.exclude(fault="host").count()
        last = "no retries left"
    if job.cancel_requested_at is not None:
        target, why = JobStatus.CANCELLED, f"cancelled; attempt {number} was lost ({reason})"
    elif spent < limit:
        host_refusal_record(job, attempt.host_id, reason, kind, now=now)
        target, why = JobStatus.QUEUED, f"attempt {number} lost ({reason}); retrying"
    else:
        target, why = JobStatus.FAILED, f"attempt {number} lost ({reason}); {last}"
    job_transition(job, target, why, expected_from=ACTIVE, at_attempt=number)


def offers_expired(now: datetime) -> list[int]:
    """The offers the reaper expires (``offer_expire``), a batch of them."""
    due = JobAttempt.objects.filter(status=AttemptStatus.OFFERED, offer_expires_at__lte=now)
    return list(due.values_list("pk", flat=True)[:_REAP_BATCH])


def leases_expired(now: datetime) -> list[int]:
    """The active attempts whose lease ran out (``attempt_lose``), a batch of them."""
    due = JobAttempt.objects.filter(status__in=ATTEMPT_ACTIVE, lease_expires_at__lte=now)
    return list(due.values_list("pk", flat=True)[:_REAP_BATCH])


def jobs_queued(now: datetime | None = None) -> list[int]:
    """The queued jobs, longest waiting first (``job_offer_next``), a batch of them.

    While no host has a free slot, only those whose queue timeout has passed (to fail them):
    placing the rest could only find every host full, at a full placement each (a backlog on
    a full fleet cost the reaper seconds per tick: docs/benchmarks.md "Placement"); capacity
    freeing offers them at once (``capacity_offer``).
    """
    now = now or timezone.now()
    queued = Job.objects.filter(status=JobStatus.QUEUED).order_by("queued_at", "pk")
    if not _any_host_has_a_free_slot(now):
        timeout = timedelta(seconds=settings.JOB_QUEUE_TIMEOUT_SECONDS)
        queued = queued.filter(queued_at__lte=now - timeout)
    return list(queued.values_list("pk", flat=True)[:_REAP_BATCH])


def _any_host_has_a_free_slot(now: datetime) -> bool:
    """Some host is fresh, online, takes work and runs fewer open attempts than its slots."""
    fresh = now - timedelta(seconds=settings.HOST_OFFLINE_AFTER_SECONDS)
    open_attempts = Count("job_attempts", filter=Q(job_attempts__status__in=ATTEMPT_OPEN))
    return (
        Host.objects.filter(
            status__in=[HostStatus.ONLINE, HostStatus.BUSY],
            last_seen_at__gte=fresh,
            is_ready=True,
            is_available=True,
            is_draining=False,
            quarantined_at__isnull=True,
            fault_quarantined_at__isnull=True,
        )
        .annotate(open_attempts=open_attempts)
        .filter(slots__gt=F("open_attempts"))
        .exists()
    )


def jobs_unsettled() -> list[int]:
    """Finished jobs whose settlement a crash interrupted (``job_settle``), a batch of them."""
    due = Job.objects.filter(status__in=FINAL, hold_released_at__isnull=True)
    return list(due.values_list("pk", flat=True)[:_REAP_BATCH])


def attempts_unreversed() -> list[int]:
    """Lost attempts whose reversal a crash interrupted (``attempt_charges_reverse``)."""
    lost = JobAttempt.objects.filter(
        status=AttemptStatus.LOST, charged_micros__gt=F("reversed_micros")
    )
    return list(lost.values_list("pk", flat=True)[:_REAP_BATCH])


# --- capacity freeing --------------------------------------------------------------------------
# Capacity freeing on a host offers the queued jobs it can take at once, in the transaction
# that freed it: an attempt ending there (finished, lost, rejected, expired, stopped at the cap
# or for overrunning, withdrawn) and the host's hello (back online, maybe with more slots).
# The reaper's tick offers queued jobs too (``jobs.tasks``); this makes it immediate. Queued
# jobs another transaction holds are skipped (SKIP LOCKED), so two hosts freeing capacity at
# once never wait on each other's jobs; what one skips, the next freeing or tick offers.

# Look at up to this many queued jobs per free slot (some may go to other hosts, or not fit).
_LOOKAHEAD = 4


def capacity_offer(host_id: int, *, now: datetime | None = None) -> int:
    """Offer queued jobs, oldest first, while this host has free slots; how many were offered
    (to this host or, where placement ranks another first, elsewhere)."""
    now = now or timezone.now()
    host = (
        Host.objects.filter(
            pk=host_id,
            status__in=[HostStatus.ONLINE, HostStatus.BUSY],
            is_ready=True,
            is_available=True,
            is_draining=False,
            quarantined_at__isnull=True,
            fault_quarantined_at__isnull=True,
        )
        .values(
            "organisation_id",
            "organisation__pool_hidden",
            "slots",
            "cpus",
            "memory_mb",
            "gpu_count",
            "max_job_cpus",
            "max_job_memory_mb",
            "max_job_gpus",
        )
        .first()
    )
    if host is None:
        return 0
    used = JobAttempt.objects.filter(host_id=host_id, status__in=ATTEMPT_OPEN).aggregate(
        jobs=Count("pk"),
        cpus=Coalesce(Sum("job__cpus"), Value(Decimal(0))),
        memory_mb=Coalesce(Sum("job__memory_mb"), 0),
        gpus=Coalesce(Sum("job__gpus"), 0),
    )
    free = host["slots"] - used["jobs"]
    if free <= 0:
        return 0
    # Only the jobs that fit the room left (placement's own limits, marketplace.placement): a
    # bigger job at the head of the queue must not use up the lookahead of a smaller freed room.
    room_cpus = (host["max_job_cpus"] or host["cpus"]) - used["cpus"]
    room_memory = (host["max_job_memory_mb"] or host["memory_mb"]) - used["memory_mb"]
    room_gpus = (host["max_job_gpus"] or host["gpu_count"]) - used["gpus"]
    queued = (
        Job.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(status=JobStatus.QUEUED)
        .filter(Q(placement=PlacementMode.AUTO) | Q(requested_host_id=host_id))
        .filter(_jobs_for_pool_q(host["organisation_id"], host["organisation__pool_hidden"]))
        .filter(cpus__lte=room_cpus, memory_mb__lte=room_memory, gpus__lte=room_gpus)
        .order_by("queued_at", "pk")
        .values_list("pk", flat=True)
    )
    offered = 0
    for job_id in list(queued[: free * _LOOKAHEAD]):
        attempt = job_offer_next(job_id, now=now)
        if attempt is None:
            continue
        offered += 1
        if attempt.host_id == host_id:
            free -= 1
            if free == 0:
                break
    return offered


def _jobs_for_pool_q(pool_id: int | None, is_hidden: bool | None) -> Q:
    """The queued jobs a host of this pool (or of none) may take, by ``hosts_placeable``'s
    rule: its pool's jobs, and public jobs unless the pool is hidden. Placement decides the
    rest (membership, visibility); this only keeps others' jobs out of the lookahead."""
    if pool_id is None:
        return Q(pool__isnull=True)
    if is_hidden:
        return Q(pool_id=pool_id)
    return Q(pool_id=pool_id) | Q(pool__isnull=True)
