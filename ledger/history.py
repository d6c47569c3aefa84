"""The wallet history: the user's ledger entries grouped into lines a person reads (reads only).

The ledger is append-only double entry (docs/ledger.md): one job leaves a hold, a capture per
charge, maybe reversals and a release on the renter's wallet and the job's escrow, which made
the raw list four rows plus one per 5-second charge per job. Here those entries are grouped by
the job id their transactions carry into **one job line** (hold, charged, reversed, refunded,
still held, the wallet's net change); a host owner's captures and reversals on their pending
earnings into **one earnings line per job**; every other transaction on the user's wallet or
available earnings (a purchase, a grant, an adjustment, a refund of a purchase, a payout, a
failed payout) is a line of its own. Maturity (pending to available earnings) is bookkeeping
inside the user's earnings and is no line. The grouping is one ``GROUP BY`` in the database,
so a page of lines costs the same whatever the number of charges behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Count,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from accounts.models import User
from ledger.models import AccountKind, Posting, TransactionKind
from ledger.providers import providers

# Job ids -> their names, from the jobs app (ledger.providers); unset, lines show ids only.
JobNamesProvider = Callable[[Collection[int]], Mapping[int, str]]

JOB_KINDS = (
    TransactionKind.HOLD,
    TransactionKind.CAPTURE,
    TransactionKind.RELEASE,
    TransactionKind.REVERSAL,
)
HISTORY_ACCOUNT_KINDS = (
    AccountKind.WALLET,
    AccountKind.ESCROW,
    AccountKind.EARNINGS_PENDING,
    AccountKind.EARNINGS_AVAILABLE,
)
LINE_JOB, LINE_EARNINGS = "job", "earnings"
_IS_JOB = Q(
    transaction__kind__in=JOB_KINDS,
    account__kind__in=[AccountKind.WALLET, AccountKind.ESCROW],
)
_IS_EARNINGS = Q(account__kind=AccountKind.EARNINGS_PENDING) & ~Q(
    transaction__kind=TransactionKind.MATURITY
)


def _sum(condition: Q, sign: int = 1) -> Coalesce:
    return Coalesce(
        Sum(
            Case(
                When(condition, then=F("amount_micros") * Value(sign)),
                default=Value(0),
                output_field=BigIntegerField(),
            )
        ),
        Value(0),
        output_field=BigIntegerField(),
    )


def _on(kind: str, account: str) -> Q:
    return Q(transaction__kind=kind, account__kind=account)


def wallet_history(user: User) -> QuerySet[Posting, dict[str, Any]]:
    """The user's history lines, newest first (by their latest entry).

    Rows: ``line`` (``job``, ``earnings`` or a transaction kind), ``group_job`` (the job of a
    job or earnings line, else None), ``group_transaction`` (a line of one transaction, else
    None), ``memo``,
    ``started_at``, ``at`` (first and latest entry), ``net_micros`` (what the line added to
    the wallet, or to the host's earnings for an earnings line or a payout), ``hold_micros``,
    ``charged_micros``, ``reversed_micros``, ``refund_micros``, ``held_micros`` (a job line's
    escrow, from its entries), ``entry_count``.
    """
    # Pool jobs' escrows are left out: the organisation paid them (its wallet's transactions).
    entries = Posting.objects.filter(
        account__user=user, account__kind__in=HISTORY_ACCOUNT_KINDS, account__organisation=None
    )
    entries = entries.exclude(transaction__kind=TransactionKind.MATURITY)
    grouped = entries.annotate(
        line=Case(
            When(_IS_JOB, then=Value(LINE_JOB)),
            When(_IS_EARNINGS, then=Value(LINE_EARNINGS)),
            default=F("transaction__kind"),
            output_field=CharField(),
        ),
        group_job=Case(
            When(_IS_JOB | _IS_EARNINGS, then=F("transaction__job_id")),
            default=Value(None),
            output_field=BigIntegerField(),
        ),
        group_transaction=Case(
            When(_IS_JOB | _IS_EARNINGS, then=Value(None)),
            default=F("transaction_id"),
            output_field=BigIntegerField(),
        ),
    )
    return (
        grouped.values("line", "group_job", "group_transaction")
        .annotate(
            memo=Max("transaction__memo"),
            started_at=Min("transaction__created_at"),
            at=Max("transaction__created_at"),
            net_micros=_sum(
                Q(account__kind__in=[AccountKind.WALLET, AccountKind.EARNINGS_AVAILABLE])
                | _IS_EARNINGS
            ),
            hold_micros=_sum(_on(TransactionKind.HOLD, AccountKind.ESCROW)),
            charged_micros=_sum(_on(TransactionKind.CAPTURE, AccountKind.ESCROW), -1),
            reversed_micros=_sum(_on(TransactionKind.REVERSAL, AccountKind.ESCROW)),
            refund_micros=_sum(_on(TransactionKind.RELEASE, AccountKind.WALLET)),
            held_micros=_sum(Q(account__kind=AccountKind.ESCROW)),
            entry_count=Count("id"),
        )
        .order_by("-at", "-group_job", "-group_transaction", "line")
    )


def job_names_of(job_ids: Collection[int]) -> Mapping[int, str]:
    """The names of ``job_ids`` from the registered ``JobNamesProvider`` (one query), or none."""
    provider = providers.job_names
    return provider(job_ids) if provider is not None and job_ids else {}
