"""Host earnings: pending earnings become available once the dispute window has passed since
the job they were earned on settled (docs/ledger.md, "Maturity")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.transactions import durable_call
from ledger.models import Account, AccountKind, LedgerTransaction, Posting, TransactionKind
from ledger.providers import providers
from ledger.services.posting import (
    AccountRef,
    Leg,
    LegsPlan,
    Replay,
    _post,
    earnings_available_ref,
    earnings_pending_ref,
)


def _jobs_final(pending: Account, cutoff: datetime) -> set[int] | None:
    """The jobs whose earnings on ``pending`` may mature: those settled (their attempts over,
    their charges final) at or before the cutoff, by the jobs app's facts
    (``ledger.providers``). None without a provider (the ledger alone): captures then mature
    by their age only."""
    provider = providers.job_facts
    if provider is None:
        return None
    job_ids = frozenset(
        job_id
        for job_id in Posting.objects.filter(account=pending, transaction__job_id__isnull=False)
        .values_list("transaction__job_id", flat=True)
        .distinct()
        if job_id is not None
    )
    facts = provider(job_ids) if job_ids else {}
    return {
        job_id
        for job_id, fact in facts.items()
        if fact.settled_at is not None and fact.settled_at <= cutoff
    }


def _maturity_due(pending: Account, cutoff: datetime) -> int:
    """What of ``pending`` may become available now.

    A job's postings (its captures and their reversals, together) count once the job settled
    at or before the cutoff — the dispute window runs from the end of the work, so earnings
    of a job that still runs (or may still be lost) never mature; captures also only once
    older than the cutoff; earlier maturities are subtracted. Never more than the balance.
    """
    young_capture = Q(transaction__kind=TransactionKind.CAPTURE, transaction__created_at__gt=cutoff)
    maturity = Q(transaction__kind=TransactionKind.MATURITY)
    final = _jobs_final(pending, cutoff)
    unsettled = (
        Q(pk__in=[])
        if final is None
        else Q(transaction__job_id__isnull=False) & ~Q(transaction__job_id__in=final)
    )
    sums = Posting.objects.filter(account=pending).aggregate(
        eligible=Coalesce(Sum("amount_micros", filter=~young_capture & ~maturity & ~unsettled), 0),
        matured=Coalesce(Sum("amount_micros", filter=maturity), 0),
    )
    due = int(sums["eligible"]) + int(sums["matured"])
    return max(0, min(pending.balance_micros, due))


def _maturity_plan(pending: AccountRef, available: AccountRef, cutoff: datetime) -> LegsPlan:
    def legs(locked: Mapping[AccountRef, Account]) -> list[Leg]:
        due = _maturity_due(locked[pending], cutoff)
        return [Leg(pending, -due), Leg(available, due)]

    return legs


def _owner_mature(owner_id: int, cutoff: datetime) -> LedgerTransaction | None:
    pending, available = earnings_pending_ref(owner_id), earnings_available_ref(owner_id)
    return _post(
        kind=TransactionKind.MATURITY,
        key=f"earnings-mature:{owner_id}:{cutoff.isoformat()}",
        accounts=[pending, available],
        legs=_maturity_plan(pending, available, cutoff),
        replay=Replay.SAME_CAUSE,
        memo=f"earnings up to {cutoff:%Y-%m-%d %H:%M:%S} UTC available",
    )


def earnings_mature(*, now: datetime | None = None) -> int:
    """Move every host owner's pending earnings older than the dispute window to available.

    ``EARNINGS_DISPUTE_WINDOW_SECONDS`` is the window. A batch entry point (the periodic task's
    work), the one ledger function that opens transactions: one ``durable_call`` per owner, each
    locking that owner's two earnings accounts in pk order, so that one run never holds every
    owner's earnings locked at once; safe to run concurrently and to
    retry (the key names the owner and the cutoff, and the amount is computed under the lock).
    Returns the number of maturity transactions written.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.EARNINGS_DISPUTE_WINDOW_SECONDS)
    owner_ids = (
        Account.objects.filter(kind=AccountKind.EARNINGS_PENDING, balance_micros__gt=0)
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )
    written = 0
    for owner_id in list(owner_ids):
        assert owner_id is not None
        posted = durable_call(_owner_mature, owner_id, cutoff)
        if posted is not None and not posted.is_replay:
            written += 1
    return written
