"""Reads of jobs: the renter's own jobs, and what hosts already run (for placement)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import TypedDict

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import User
from config.errors import NotFound
from jobs.billing import PaidBy, attempt_billable_counters, paid_by
from jobs.group_selectors import group_blobs_in_use
from jobs.metering import Counters, cost_total
from jobs.models import Job, JobAttempt, JobInput, JobOutput, JobStatus, PlacementMode
from jobs.services.usage import job_reservation
from jobs.states import ATTEMPT_OPEN, FINAL
from ledger.selectors import AttemptCharges, job_money
from ledger.services import JobFact
from marketplace.placement import Candidate, JobSpec, disk_needed_mb


def job_spec(job: Job) -> JobSpec:
    return JobSpec(
        cpus=Decimal(job.cpus),
        memory_mb=job.memory_mb,
        gpus=job.gpus,
        timeout_seconds=job.timeout_seconds,
        disk_mb=disk_needed_mb(
            work_mb=job.work_mb,
            outputs_mb=job.outputs_mb,
            tmp_mb=job.tmp_mb,
            inputs_bytes=job.inputs_bytes,
        ),
    )


def blobs_in_use(blob_ids: Collection[int]) -> set[int]:
    """Of these blobs, those an unfinished job reads (an input or its code archive), or a
    running job group's tasks will read: the blob store's collector keeps them and their
    holdings (``blobs.providers``)."""
    unfinished = ~Q(job__status__in=FINAL)
    inputs = JobInput.objects.filter(unfinished, blob_id__in=blob_ids).values_list(
        "blob_id", flat=True
    )
    archives = (
        Job.objects.filter(code_archive_id__in=blob_ids)
        .exclude(status__in=FINAL)
        .values_list("code_archive_id", flat=True)
    )
    used = {blob_id for blob_id in [*inputs, *archives] if blob_id is not None}
    return used | group_blobs_in_use(blob_ids)


def candidates_loaded(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates with what their open attempts (offered or running) already take."""
    candidates = list(candidates)
    rows = (
        JobAttempt.objects.filter(
            host_id__in=[c.host_id for c in candidates], status__in=ATTEMPT_OPEN
        )
        .values("host_id")
        .annotate(
            cpus=Sum("job__cpus"),
            memory=Sum("job__memory_mb"),
            gpus=Sum("job__gpus"),
            jobs=Count("pk"),
        )
    )
    loads = {row["host_id"]: row for row in rows}
    return [
        dataclasses.replace(
            c,
            used_cpus=Decimal(loads[c.host_id]["cpus"]),
            used_memory_mb=int(loads[c.host_id]["memory"]),
            used_gpus=int(loads[c.host_id]["gpus"]),
            used_jobs=int(loads[c.host_id]["jobs"]),
        )
        if c.host_id in loads
        else c
        for c in candidates
    ]


# A finished job's escrow is released right after it ends, or by the reaper within seconds;
# only past this grace does a non-empty escrow count as a reconciliation problem.
SETTLE_GRACE = timedelta(minutes=5)


def job_facts(job_ids: frozenset[int]) -> dict[int, JobFact]:
    """Reconciliation facts for the ledger (registered in ledger.providers): finished? the cap, and
    for a settled job (whose charges can't change any more) the cost the jobs app recorded.

    A job that doesn't exist runs nothing, so it counts as finished: a hold left in its escrow
    is stranded (job rows are committed before their hold and never deleted after it).
    """
    settled_before = timezone.now() - SETTLE_GRACE
    rows = Job.objects.filter(pk__in=job_ids).values_list(
        "pk", "status", "hold_released_at", "finished_at", "max_cost_micros", "cost_micros"
    )
    facts = {pk: JobFact(is_finished=True) for pk in job_ids}
    for pk, status, released, finished, cap, cost in rows:
        facts[pk] = JobFact(
            is_finished=status in FINAL
            and (released is not None or (finished is not None and finished < settled_before)),
            cap_micros=cap,
            charged_micros=cost if status in FINAL and released is not None else None,
            settled_at=released if status in FINAL else None,
        )
    return facts


def job_names(job_ids: Collection[int]) -> dict[int, str]:
    """Job ids -> names (``ledger.history``'s ``JobNamesProvider``), in one query."""
    return dict(Job.objects.filter(pk__in=list(job_ids)).values_list("pk", "name"))


def jobs_of(user: User) -> QuerySet[Job]:
    return (
        Job.objects.filter(owner=user)
        .select_related("host", "requested_host")
        .prefetch_related("inputs")
        .order_by("-created_at", "-pk")
    )


def job_of(user: User, job_id: int) -> Job:
    """The user's job; NotFound for someone else's, so ids of others' jobs reveal nothing."""
    job = (
        Job.objects.select_related("host", "requested_host")
        .prefetch_related("inputs")
        .filter(owner=user, pk=job_id)
        .first()
    )
    if job is None:
        raise NotFound("no such job")
    return job


def job_queue_position(job: Job) -> int | None:
    """A queued job's place in its queue (1 = offered next): the jobs waiting for the same
    chosen host, or the auto-placed ones, queued before it. None when it isn't queued."""
    if job.status != JobStatus.QUEUED:
        return None
    if job.placement == PlacementMode.CHOSEN:
        queue = Job.objects.filter(requested_host_id=job.requested_host_id)
    else:
        queue = Job.objects.filter(placement=PlacementMode.AUTO)
    ahead = queue.filter(status=JobStatus.QUEUED).filter(
        Q(queued_at__lt=job.queued_at) | Q(queued_at=job.queued_at, pk__lt=job.pk)
    )
    return ahead.count() + 1


def job_latest_attempt(job: Job) -> JobAttempt | None:
    return job.attempts.order_by("-number").first()


def job_outputs(job: Job) -> QuerySet[JobOutput]:
    """Uploaded outputs of the attempt that finished the job (the latest one with outputs)."""
    latest = (
        JobOutput.objects.filter(job=job, uploaded_at__isnull=False)
        .order_by("-attempt__number")
        .values_list("attempt_id", flat=True)
        .first()
    )
    return JobOutput.objects.filter(attempt_id=latest, uploaded_at__isnull=False).order_by("name")


# --- receipts ---------------------------------------------------------------------------------


class UsageLine(TypedDict):
    resource: str  # cpu (used), memory (reserved), gpu (reserved)
    quantity: str  # exact decimal
    unit: str  # core-second, GB-second, GPU-second
    rate_micros_per_hour: int  # per core-hour, GB-hour, GPU-hour


class AttemptReceipt(TypedDict):
    attempt: int
    host_id: int
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    wall_seconds: str
    memory_peak_mb: int
    usage: list[UsageLine]
    usage_cost_micros: int  # what the reported usage costs at the rates, before the cap
    gross_micros: int  # charged to the escrow
    fee_micros: int  # of which the platform fee
    host_net_micros: int  # of which the host's earnings
    reversed_micros: int  # gross given back (a lost attempt)
    reversed_fee_micros: int
    charged_micros: int  # gross - reversed: what the renter pays for this attempt


class ReceiptTotals(TypedDict):
    gross_micros: int
    fee_micros: int
    host_net_micros: int
    reversed_micros: int
    charged_micros: int


class Receipt(TypedDict):
    job_id: int
    job_name: str
    status: str
    is_settled: bool
    max_cost_micros: int
    attempts: list[AttemptReceipt]
    totals: ReceiptTotals
    hold_micros: int  # taken from the wallet into the job's escrow at submit
    refund_micros: int  # returned to the wallet at settlement
    held_micros: int  # still in the escrow (a job not settled yet)
    spent_by: str  # the owner's username: who spent
    paid_by: PaidBy


def _exact(numerator: int, denominator: int) -> str:
    """numerator / denominator as an exact decimal string (the denominators here divide a power
    of ten, so the expansion ends)."""
    with localcontext() as context:
        context.prec = 60
        quotient = Decimal(numerator) / Decimal(denominator)
    return format(quotient.normalize(), "f") if quotient else "0"


def _usage_lines(counters: Counters, job: Job, attempt: JobAttempt) -> list[UsageLine]:
    wall_ms = counters.wall_ms
    return [
        UsageLine(
            resource="cpu",
            quantity=_exact(counters.cpu_ms, 1000),
            unit="core-second",
            rate_micros_per_hour=attempt.cpu_core_hour_micros,
        ),
        UsageLine(
            resource="memory",
            quantity=_exact(job.memory_mb * wall_ms, 1024 * 1000),
            unit="GB-second",
            rate_micros_per_hour=attempt.memory_gb_hour_micros,
        ),
        UsageLine(
            resource="gpu",
            quantity=_exact(job.gpus * wall_ms, 1000),
            unit="GPU-second",
            rate_micros_per_hour=attempt.gpu_hour_micros,
        ),
    ]


def _attempt_receipt(attempt: JobAttempt, job: Job, money: AttemptCharges) -> AttemptReceipt:
    # What is billed: the reported counters clipped to the server's window and the job's cores
    # (jobs.billing), so quantity x rate is what was charged.
    billed = attempt_billable_counters(attempt, job, timezone.now())
    return AttemptReceipt(
        attempt=attempt.number,
        host_id=attempt.host_id,
        status=str(attempt.status),
        started_at=attempt.started_at,
        finished_at=attempt.finished_at,
        wall_seconds=_exact(billed.wall_ms, 1000),
        memory_peak_mb=int(attempt.usage.get("memory_peak_mb", 0)),
        usage=_usage_lines(billed, job, attempt),
        usage_cost_micros=cost_total(billed, attempt.rates, job_reservation(job)),
        gross_micros=money.gross_micros,
        fee_micros=money.fee_micros,
        host_net_micros=money.host_net_micros,
        reversed_micros=money.reversed_gross_micros,
        reversed_fee_micros=money.reversed_fee_micros,
        charged_micros=money.charged_micros,
    )


def job_receipt(user: User, job_id: int) -> Receipt:
    """The owner's receipt of a job: per attempt that ran, the usage, rates and what was
    charged, fee and host share, reversals; the totals; the hold and the refund. Amounts come
    from the ledger (``ledger.selectors.job_money``), usage from the attempts' counters."""
    job = job_of(user, job_id)
    money = job_money(job.pk)
    attempts = [
        _attempt_receipt(attempt, job, money.attempts.get(attempt.number, AttemptCharges()))
        for attempt in job.attempts.filter(accepted_at__isnull=False).order_by("number")
    ]
    totals = ReceiptTotals(
        gross_micros=sum(a["gross_micros"] for a in attempts),
        fee_micros=sum(a["fee_micros"] for a in attempts),
        host_net_micros=sum(a["host_net_micros"] for a in attempts),
        reversed_micros=sum(a["reversed_micros"] for a in attempts),
        charged_micros=sum(a["charged_micros"] for a in attempts),
    )
    return Receipt(
        job_id=job.pk,
        job_name=job.name,
        status=str(job.status),
        is_settled=job.hold_released_at is not None,
        max_cost_micros=job.max_cost_micros,
        attempts=attempts,
        totals=totals,
        hold_micros=money.hold_placed_micros,
        refund_micros=money.hold_released_micros,
        held_micros=money.hold_left_micros,
        spent_by=user.username,
        paid_by=paid_by(job.pool_id),
    )
