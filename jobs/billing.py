"""A job's money, all of it: the hold, usage charges, reversals and settlement (docs/metering.md).

Every movement goes through ``ledger.services`` (nothing here writes ledger tables) under a key
that names its cause, so a rerun after a crash or a deadlock finds the first transaction
instead of moving money twice. These run in the caller's transaction, which the entry point
owns (``config.transactions.durable``: the submit view, an agent message, a Celery task); the
job and attempt rows move in it right after the ledger rows, and the owner's socket hears of it
after the commit.

- **Hold**: on submit, the cap moves from the wallet into the job's escrow (``job_hold_place``);
  a pool job's from its organisation's wallet, within the member's monthly cap.
- **Charges**: ``usage_charges_post`` (Celery beat, every ``METERING_POST_INTERVAL_SECONDS``)
  takes the attempts whose reported usage is ahead of their charges and posts, for all of them
  in one ledger transaction (``holds_capture_many``), the difference between the capped cost of
  the latest counters and what was charged. A capture's key names the attempt's cumulative
  charge *before* it (``usage:<job>:<attempt>:<before>``): two posters that read the same
  charge can't both charge from it (the second is a conflict), a repeat of the same step is a
  replay, and the charges of an attempt always add up to the last total, to the micro-credit.
  The attempt's ``charged_micros`` and the job's ``cost_micros`` move in the same transaction.
  The Celery task runs one batch per transaction.
- **Reversal**: a lost attempt's charges go back to the escrow (``attempt_charges_reverse``).
- **Settlement**: when a job ends, ``job_settle`` reverses what lost attempts were charged,
  posts the final charges from the final counters, and returns the rest of the hold (to the
  organisation's wallet for a pool job).

Lock order: the job rows (pk order), a group's row, the member's Membership row (a pool job's
hold), then the ledger's accounts (docs/ledger.md, "Lock order").
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from accounts.models import Membership, Organisation, User
from agent.metering import Rates
from hosts.models import RATE_FIELDS, Host
from jobs import events
from jobs.metering import BILLING_WALL_TOLERANCE_MS, Counters, billable_counters, charge_decide
from jobs.models import AttemptStatus, Job, JobAttempt, JobGroup
from jobs.services.usage import attempt_counters, billing_facts, job_reservation
from jobs.states import FINAL
from ledger.money import fee_increment
from ledger.selectors import organisation_balances, wallet_balances
from ledger.services import (
    Capture,
    CaptureOutcome,
    CaptureResult,
    charges_reverse,
    hold_place,
    hold_release,
    holds_capture_many,
    member_lock,
    organisation_hold_place,
)

logger = logging.getLogger(__name__)


def hold_key(job_id: int) -> str:
    return f"job-hold:{job_id}"


def release_key(job_id: int) -> str:
    return f"job-release:{job_id}"


def usage_key(job_id: int, attempt: int, charged_before_micros: int) -> str:
    """The key of the attempt's charge that starts from ``charged_before_micros``."""
    return f"usage:{job_id}:{attempt}:{charged_before_micros}"


def reverse_key(job_id: int, attempt: int, charged_micros: int) -> str:
    return f"usage-reverse:{job_id}:{attempt}:{charged_micros}"


def job_hold_place(job: Job) -> None:
    """Move the job's cap into its escrow: from the owner's wallet, or for a pool job from the
    pool's organisation's wallet within the owner's monthly cap as a member
    (``ledger.services.organisation_hold_place``: it locks the membership row before the
    ledger's accounts). Raises InsufficientCredits (``insufficient_credits``,
    ``member_cap_exceeded``) or PermissionDenied, having written nothing.

    A pool job holds its whole cap even where it will run at zero rates (``attempt_rates``):
    the hold is placed before a host is chosen, and the unspent hold returns to the
    organisation's wallet when the job settles (docs/pools.md, "The institution pays").
    """
    if job.pool_id is not None:
        organisation_hold_place(
            organisation_id=job.pool_id,
            user=job.owner,
            job_id=job.pk,
            amount_micros=job.max_cost_micros,
            key=hold_key(job.pk),
        )
        return
    hold_place(
        user=job.owner,
        job_id=job.pk,
        amount_micros=job.max_cost_micros,
        key=hold_key(job.pk),
    )


FREE_RATES = Rates(cpu_core_hour_micros=0, memory_gb_hour_micros=0, gpu_hour_micros=0)


def pool_runs_free(pool_id: int | None, owner_id: int) -> bool:
    """Whether ``owner``'s jobs in this pool run at zero rates on the pool's own hosts: the
    organisation prices its machines at zero for its members (``pool_members_free``)."""
    if pool_id is None:
        return False
    return Membership.objects.filter(
        organisation_id=pool_id, user_id=owner_id, organisation__pool_members_free=True
    ).exists()


def attempt_rates(job: Job, host_id: int, rates: Rates) -> Rates:
    """The rates an attempt of ``job`` on ``host_id`` is charged at: the host's listed
    ``rates``, or zero for a member's pool job on one of the pool's own hosts when the pool
    runs its members free. Usage is metered and reported all the same (the receipt's lines at
    rate 0), nothing is charged, the host earns nothing and the platform takes no fee."""
    pool_id = job.pool_id
    if pool_id is None or not pool_runs_free(pool_id, job.owner_id):
        return rates
    if not Host.objects.filter(pk=host_id, organisation_id=pool_id).exists():
        return rates
    return FREE_RATES


class PaidBy(TypedDict):
    """The wallet the job's hold came from and its rest went back to."""

    wallet: str  # "user": the owner's own; "organisation": the pool's organisation's
    organisation: int | None
    organisation_name: str | None


def paid_by(pool_id: int | None) -> PaidBy:
    """Who paid a job (or group) of this pool: the owner's wallet, or the organisation's."""
    if pool_id is None:
        return PaidBy(wallet="user", organisation=None, organisation_name=None)
    name = Organisation.objects.filter(pk=pool_id).values_list("name", flat=True).first()
    return PaidBy(wallet="organisation", organisation=pool_id, organisation_name=name)


def hold_payer_available(owner: User, pool_id: int | None) -> int:
    """What the wallet a new hold of ``owner``'s would come from can spend now: the owner's
    own, or for a pool job the organisation's (its balance; the member's cap is checked by the
    hold itself, under its lock)."""
    if pool_id is None:
        return wallet_balances(owner)["available_micros"]
    return organisation_balances(pool_id)["available_micros"]


# --- charges ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargesPosted:
    attempts: int  # attempts looked at
    posted: int  # captures written
    posted_micros: int  # their gross
    refused: int  # captures the ledger refused or found posted by someone else


class ChargesMoved(Exception):
    """An attempt changed under the batch (lost, or charged by a concurrent poster)."""


_DUE_FIELDS = (
    "id",
    "job_id",
    "number",
    "host_id",
    "status",
    "usage_seq",
    "usage",
    "usage_cpu_ms",
    "usage_wall_ms",
    "charged_micros",
    "charged_seq",
    "reversed_micros",
    "started_at",
    "finished_at",
    *RATE_FIELDS,
    "job__timeout_seconds",
    "job__cancel_requested_at",
    "job__max_cost_micros",
    "job__cost_micros",
    "job__cpus",
    "job__memory_mb",
    "job__gpus",
    "host__owner_id",
)


def _due() -> QuerySet[JobAttempt]:
    """Attempts with reports newer than their charges, on unsettled jobs."""
    return (
        JobAttempt.objects.filter(
            usage_seq__gt=F("charged_seq"),
            job__hold_released_at__isnull=True,
        )
        .exclude(status=AttemptStatus.LOST)
        .select_related("job", "host")
        .only(*_DUE_FIELDS)
    )


def _ms_between(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds() * 1000))


def billable_window_ms(attempt: JobAttempt, job: Job, now: datetime) -> int:
    """The most wall time of this attempt that may be billed, on the server's clock: from the
    moment the server recorded it running (nothing before: install time is not billed) to the
    first of now, its end, its cancel + the stop grace, its timeout + the stop grace; the
    running part with ``BILLING_WALL_TOLERANCE_MS`` (the container starts a moment before the
    server hears of it). Reported counters beyond it are clipped, never paid."""
    if attempt.started_at is None:
        return 0
    started = attempt.started_at
    seen_until = min(now, attempt.finished_at or now)
    window = _ms_between(started, seen_until) + BILLING_WALL_TOLERANCE_MS
    grace = timedelta(seconds=settings.JOB_STOP_GRACE_SECONDS)
    deadline = started + timedelta(seconds=job.timeout_seconds) + grace
    if job.cancel_requested_at is not None:
        deadline = min(deadline, max(started, job.cancel_requested_at + grace))
    return min(window, _ms_between(started, deadline))


def attempt_billable_counters(attempt: JobAttempt, job: Job, now: datetime) -> Counters:
    """The attempt's latest accepted counters, clipped to what the server allows to bill."""
    return billable_counters(
        attempt_counters(attempt), job_reservation(job), billable_window_ms(attempt, job, now)
    )


def _capture_for(attempt: JobAttempt, now: datetime) -> Capture | None:
    """The charge that brings the attempt from what it was charged to the capped cost of its
    latest counters, clipped to the billable window; None when there is nothing to charge."""
    facts = billing_facts(attempt, attempt.job)
    decision = charge_decide(
        counters=attempt_billable_counters(attempt, attempt.job, now),
        rates=facts.rates,
        reservation=facts.reservation,
        charged_micros=attempt.charged_micros,
        cap_remaining_micros=facts.allowance_micros - attempt.charged_micros,
    )
    if decision.charge_micros <= 0:
        return None
    before, after = attempt.charged_micros, decision.total_micros
    split = fee_increment(before, after)
    return Capture(
        job_id=attempt.job_id,
        attempt=attempt.number,
        host_owner_id=attempt.host.owner_id,
        gross_micros=split.gross_micros,
        fee_micros=split.fee_micros,
        key=usage_key(attempt.job_id, attempt.number, before),
        host_id=attempt.host_id,
        details={
            "charged_before_micros": before,
            "charged_after_micros": after,
            "usage_seq": attempt.usage_seq,
        },
    )


def _rows_update(sql: str, rows: Sequence[tuple[int, ...]]) -> int:
    """Run one ``UPDATE … FROM (VALUES …) AS v`` over ``rows``; the number of rows updated.

    The VALUES columns are ``v.column1``, ``v.column2``… (their name on PostgreSQL and SQLite
    alike); the statement starts with UPDATE so that every driver reports the row count.
    """
    width = len(rows[0])
    values = ", ".join("(" + ", ".join(["CAST(%s AS BIGINT)"] * width) + ")" for _ in rows)
    with connection.cursor() as cursor:
        cursor.execute(sql.format(values=values), [value for row in rows for value in row])
        return int(cursor.rowcount)


# Both statements run in the ledger's transaction, right after the ledger rows: the job rows
# (locked before the ledger's accounts, ``_jobs_lock``), then the attempts. Only our own table
# names and constants are formatted in; every value is a parameter.
_JOB = Job._meta.db_table
_ATTEMPT = JobAttempt._meta.db_table
# v: (job id, gross added)
_JOB_COST_ADD = (
    f"UPDATE {_JOB} SET cost_micros = {_JOB}.cost_micros + v.column2 "  # noqa: S608
    f"FROM (VALUES {{values}}) AS v WHERE {_JOB}.id = v.column1"
)
# v: (job id, attempt number, charged before, charged after, seq charged up to)
_ATTEMPT_CHARGED_SET = (
    f"UPDATE {_ATTEMPT} SET charged_micros = v.column4, charged_seq = v.column5 "  # noqa: S608
    f"FROM (VALUES {{values}}) AS v WHERE {_ATTEMPT}.job_id = v.column1 "
    f"AND {_ATTEMPT}.number = v.column2 AND {_ATTEMPT}.charged_micros = v.column3 "
    f"AND {_ATTEMPT}.status <> '{AttemptStatus.LOST.value}'"
)
# v: (attempt id, seq): reports that brought nothing to charge (no cost, or the cap)
_ATTEMPT_SEQ_CHARGED = (
    f"UPDATE {_ATTEMPT} SET charged_seq = v.column2 FROM (VALUES {{values}}) AS v "  # noqa: S608
    f"WHERE {_ATTEMPT}.id = v.column1 AND {_ATTEMPT}.charged_seq < v.column2"
)


def _jobs_lock(job_ids: Iterable[int]) -> None:
    """Lock the job rows in pk order: the jobs app's rows come before the ledger's accounts,
    as in a settlement (the job's transition, then its escrow), so the two can't deadlock."""
    ids = sorted(set(job_ids))
    list(Job.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))


def _charges_record(results: Sequence[CaptureResult]) -> None:
    """Move the jobs' costs and the attempts' charges with the captures just written.

    An attempt that was lost (or charged by someone else) meanwhile rolls the batch back: its
    charge would escape the reversal. The next run tries again without it.
    """
    posted = [result.capture for result in results if result.outcome is CaptureOutcome.POSTED]
    if not posted:
        return
    per_job: dict[int, int] = defaultdict(int)
    for capture in posted:
        per_job[capture.job_id] += capture.gross_micros
    _rows_update(_JOB_COST_ADD, sorted(per_job.items()))
    moved = _rows_update(
        _ATTEMPT_CHARGED_SET,
        [
            (
                capture.job_id,
                capture.attempt,
                capture.details["charged_before_micros"],
                capture.details["charged_after_micros"],
                capture.details["usage_seq"],
            )
            for capture in posted
        ],
    )
    if moved != len(posted):
        raise ChargesMoved(f"{len(posted) - moved} attempt(s) changed while being charged")


def _usage_event(attempt: JobAttempt, cost_micros: int) -> dict[str, Any]:
    usage = {k: v for k, v in attempt.usage.items() if k not in ("job_id", "attempt")}
    return {
        "type": "job.usage",
        "job_id": attempt.job_id,
        "attempt": attempt.number,
        **usage,
        "cost_micros": cost_micros,
    }


def attempts_charge(attempts: Iterable[JobAttempt]) -> ChargesPosted:
    """Charge these attempts (loaded as ``_due`` loads them) up to their latest counters, in
    the caller's transaction; after its commit, tell the owners' sockets the cost so far. A
    batch an attempt moved under (``ChargesMoved``) is undone to its savepoint, posting nothing."""
    attempts = list(attempts)
    now = timezone.now()
    by_key: dict[str, JobAttempt] = {}
    captures: list[Capture] = []
    nothing_due: list[tuple[int, int]] = []
    for attempt in attempts:
        capture = _capture_for(attempt, now)
        if capture is None:
            nothing_due.append((attempt.pk, attempt.usage_seq))
        else:
            captures.append(capture)
            by_key[capture.key] = attempt
    if nothing_due:
        # Newer reports that cost nothing more (idle, free, or the cap): charged up to them.
        _rows_update(_ATTEMPT_SEQ_CHARGED, nothing_due)
    if not captures:
        return ChargesPosted(len(attempts), 0, 0, 0)
    try:
        with transaction.atomic():  # a savepoint in the caller's transaction
            _jobs_lock(capture.job_id for capture in captures)
            results = holds_capture_many(captures)
            _charges_record(results)
    except ChargesMoved as exc:
        logger.info("usage charges rolled back, to be retried: %s", exc)
        return ChargesPosted(len(attempts), 0, 0, len(captures))
    posted = [r for r in results if r.outcome is CaptureOutcome.POSTED]
    for result in results:
        if result.outcome is not CaptureOutcome.POSTED:
            logger.warning("usage charge %s not posted: %s", result.capture.key, result.code)
    pushes = []
    for result in posted:
        attempt = by_key[result.capture.key]
        cost = attempt.job.cost_micros + result.capture.gross_micros
        pushes.append((attempt.job_id, _usage_event(attempt, cost)))
    transaction.on_commit(lambda: events.job_events_push(pushes))
    return ChargesPosted(
        attempts=len(attempts),
        posted=len(posted),
        posted_micros=sum(result.capture.gross_micros for result in posted),
        refused=len(results) - len(posted),
    )


def usage_charges_post(limit: int = 1000) -> ChargesPosted:
    """Charge up to ``limit`` attempts whose reported usage is ahead of their charges.

    Run by Celery beat every ``METERING_POST_INTERVAL_SECONDS``; safe to run concurrently and to
    repeat (a charge's key names where it starts, so a racing poster's capture is refused, not
    doubled). Moves money, in the caller's transaction (the task's: one per batch).
    """
    return attempts_charge(_due().order_by("pk")[:limit])


# --- reversals --------------------------------------------------------------------------------


def attempt_charges_reverse(attempt_id: int) -> int:
    """Give back everything a lost attempt was charged: the renter pays nothing for work a host
    lost; the host's earnings and the platform fee are taken back (ledger.charges_reverse).

    Returns the gross reversed. Idempotent (the key names what was charged); the reaper calls
    it again for any lost attempt still ahead of its reversals. Runs in the caller's
    transaction: the job's cost and the attempt's reversals move right after the ledger's rows.
    """
    attempt = (
        JobAttempt.objects.filter(pk=attempt_id, status=AttemptStatus.LOST)
        .filter(charged_micros__gt=F("reversed_micros"))
        .first()
    )
    if attempt is None:
        return 0
    with transaction.atomic(savepoint=False):  # the caller's transaction, else its own
        _jobs_lock([attempt.job_id])
        posted = charges_reverse(
            job_id=attempt.job_id,
            attempt=attempt.number,
            key=reverse_key(attempt.job_id, attempt.number, attempt.charged_micros),
        )
        if posted is None or posted.is_replay:
            return 0
        gross = int(posted.metadata["gross_micros"])
        Job.objects.filter(pk=attempt.job_id).update(cost_micros=F("cost_micros") - gross)
        JobAttempt.objects.filter(pk=attempt.pk).update(
            reversed_micros=F("reversed_micros") + gross
        )
    return gross


# --- settlement -------------------------------------------------------------------------------


def job_settle(job_id: int) -> bool:
    """Settle a finished job, once: reverse what its lost attempts were charged, post the final
    charges from the final counters, then return the rest of the hold to the owner's wallet.

    Moves money (ledger: charges_reverse, holds_capture_many, hold_release), all in the
    caller's transaction: the agent message, cancel or reaper step that ended the job settles
    it in the same commit (the reaper settles what is left, each job in its own). Locks the
    job row first (and a group's task its group's row next, a pool job its owner's Membership
    row next, then the ledger's accounts).
    Returns True when this call released the hold. A job group's task then tells its group
    (``jobs.services.groups.group_task_settled``: the next tasks' jobs and holds), in the same
    transaction.
    """
    with transaction.atomic(savepoint=False):  # the caller's transaction, else its own
        job = (
            Job.objects.select_for_update()
            .filter(pk=job_id, status__in=FINAL, hold_released_at__isnull=True)
            .first()
        )
        if job is None:
            return False
        if job.group_id is not None:
            # A group's task: its group's row next, before the ledger's accounts, the order of
            # everything that starts a group's tasks (the group row, then the new jobs' holds).
            JobGroup.objects.select_for_update().filter(pk=job.group_id).values_list("pk").get()
        if job.pool_id is not None:
            # The member's row before the organisation wallet's lock (the release): a group's
            # next task's hold, placed below in this transaction, takes it too.
            member_lock(organisation_id=job.pool_id, user_id=job.owner_id)
        lost = JobAttempt.objects.filter(
            job_id=job_id, status=AttemptStatus.LOST, charged_micros__gt=F("reversed_micros")
        )
        for attempt_id in lost.values_list("pk", flat=True):
            attempt_charges_reverse(attempt_id)
        final = attempts_charge(_due().filter(job_id=job_id).order_by("pk"))
        if final.refused:
            logger.warning("job %s: %d final charge(s) not posted", job_id, final.refused)
        hold_release(job_id=job_id, key=release_key(job_id))
        released = (
            Job.objects.filter(pk=job_id, hold_released_at__isnull=True).update(
                hold_released_at=timezone.now()
            )
            == 1
        )
        if released and job.group_id is not None:
            # The group records the result and starts what may start now, in this transaction,
            # under its row lock (locked above).
            from jobs.services.groups import group_task_settled  # it creates jobs: above us

            group_task_settled(job_id)
        if released and job.pool_id is not None:
            from jobs.services.audit import job_finished_audit  # a service: above us

            job_finished_audit(job_id)
        return released
