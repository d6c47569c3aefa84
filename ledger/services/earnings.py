"""Host earnings: pending earnings become available once the dispute window has passed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.transactions import durable_call
from ledger.models import Account, AccountKind, LedgerTransaction, Posting, TransactionKind
from ledger.services.posting import (
    AccountRef,
    Leg,
    LegsPlan,
    Replay,
    _post,
    earnings_available_ref,
    earnings_pending_ref,
)


def _maturity_due(pending: Account, cutoff: datetime) -> int:
    """What of ``pending`` may become available now.

    Captures count once they are older than the cutoff; reversals (and any other debit) count at
    once, so a reversed charge never matures early; earlier maturities are subtracted. Never more
    than the balance.
    """
    young_capture = Q(transaction__kind=TransactionKind.CAPTURE, transaction__created_at__gt=cutoff)
    maturity = Q(transaction__kind=TransactionKind.MATURITY)
    sums = Posting.objects.filter(account=pending).aggregate(
        eligible=Coalesce(Sum("amount_micros", filter=~young_capture & ~maturity), 0),
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
