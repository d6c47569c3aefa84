"""Reads of the ledger for the API, reports and other apps."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

from django.db.models import (
    BigIntegerField,
    Case,
    Exists,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Membership, User
from ledger.models import (
    Account,
    AccountKind,
    AccountRestriction,
    Posting,
    ReconciliationRun,
    TransactionKind,
)

WALLET_LINE_KINDS = (AccountKind.WALLET, AccountKind.ESCROW)


class WalletBalances(TypedDict):
    """The wallet endpoint's body as it is (``WalletOutput``): these keys are REST field names."""

    # Everything the user owns: available + held.
    balance_micros: int
    # In the escrows of the user's jobs: committed, not spendable.
    held_micros: int
    # The wallet: what the user can spend on a new hold.
    available_micros: int


def wallet_balances(user: User) -> WalletBalances:
    """The user's credits: available (the wallet) and held (the sum of their job escrows)."""
    # A pool job's escrow is the organisation's money (its user is only who spent it).
    own = Account.objects.filter(user=user, kind__in=WALLET_LINE_KINDS, organisation__isnull=True)
    sums = own.aggregate(
        available=Coalesce(Sum("balance_micros", filter=Q(kind=AccountKind.WALLET)), 0),
        held=Coalesce(Sum("balance_micros", filter=Q(kind=AccountKind.ESCROW)), 0),
    )
    available, held = int(sums["available"]), int(sums["held"])
    return {
        "balance_micros": available + held,
        "held_micros": held,
        "available_micros": available,
    }


def wallet_transactions(
    user: User, *, job_id: int | None = None, transaction_id: int | None = None
) -> QuerySet[Posting]:
    """The user's ledger lines (postings on their wallet and job escrows), newest first.

    With ``job_id`` or ``transaction_id``: the entries behind one line of the wallet history
    (``ledger.history``), on the user's earnings accounts too (a host owner's earnings line).
    """
    kinds: tuple[str, ...] = WALLET_LINE_KINDS
    # Not the escrows of pool jobs: the organisation paid them (its wallet's transactions).
    entries = Posting.objects.filter(account__user=user, account__organisation__isnull=True)
    if job_id is not None:
        entries = entries.filter(transaction__job_id=job_id)
        kinds = (*WALLET_LINE_KINDS, AccountKind.EARNINGS_PENDING, AccountKind.EARNINGS_AVAILABLE)
    if transaction_id is not None:
        entries = entries.filter(transaction_id=transaction_id)
        kinds = (*WALLET_LINE_KINDS, AccountKind.EARNINGS_PENDING, AccountKind.EARNINGS_AVAILABLE)
    return (
        entries.filter(account__kind__in=kinds)
        .select_related("transaction", "account")
        .order_by("-id")
    )


def reconciliation_last() -> ReconciliationRun | None:
    return ReconciliationRun.objects.order_by("-started_at", "-pk").first()


# --- job money (receipts) and host earnings -----------------------------------------------------


@dataclass(frozen=True)
class AttemptCharges:
    """What the ledger holds for one attempt of a job: its captures and their reversals."""

    gross_micros: int = 0
    fee_micros: int = 0
    reversed_gross_micros: int = 0
    reversed_fee_micros: int = 0

    @property
    def host_net_micros(self) -> int:
        return self.gross_micros - self.fee_micros

    @property
    def reversed_host_net_micros(self) -> int:
        return self.reversed_gross_micros - self.reversed_fee_micros

    @property
    def charged_micros(self) -> int:
        """What the renter pays for the attempt: captures net of reversals."""
        return self.gross_micros - self.reversed_gross_micros


@dataclass(frozen=True)
class JobMoney:
    """A job's hold: placed (wallet -> escrow), released (escrow -> wallet) and what is left.

    Internal names; the receipt's REST fields (``hold_micros``, ``refund_micros``,
    ``held_micros``) are mapped from these by the jobs app and don't change."""

    hold_placed_micros: int  # moved from the wallet into the job's escrow
    hold_released_micros: int  # returned from the escrow to the wallet
    hold_left_micros: int  # still in the escrow
    attempts: dict[int, AttemptCharges] = field(default_factory=dict)


# (transaction kind, account kind) of a posting -> the AttemptCharges field it adds to, signed.
_ATTEMPT_FIELDS: dict[tuple[str, str], tuple[str, int]] = {
    (TransactionKind.CAPTURE.value, AccountKind.ESCROW.value): ("gross_micros", -1),
    (TransactionKind.CAPTURE.value, AccountKind.REVENUE.value): ("fee_micros", 1),
    (TransactionKind.REVERSAL.value, AccountKind.ESCROW.value): ("reversed_gross_micros", 1),
    (TransactionKind.REVERSAL.value, AccountKind.REVENUE.value): ("reversed_fee_micros", -1),
}


def job_money(job_id: int) -> JobMoney:
    """The money of one job, from its ledger transactions (one query): the hold, the release,
    and per attempt the gross and fee captured and reversed."""
    return jobs_money([job_id])[job_id]


def jobs_money(job_ids: Collection[int]) -> dict[int, JobMoney]:
    """``job_money`` of each of these jobs, in one query (a job group's receipt)."""
    rows = (
        Posting.objects.filter(
            transaction__job_id__in=list(job_ids),
            account__kind__in=[AccountKind.ESCROW, AccountKind.REVENUE],
        )
        .values_list(
            "transaction__job_id", "transaction__kind", "transaction__attempt", "account__kind"
        )
        .annotate(total=Sum("amount_micros"))
        .order_by()
    )
    per_job: dict[int, list[tuple[str, int | None, str, int]]] = {pk: [] for pk in job_ids}
    for job_id, kind, attempt, account, total in rows:
        per_job[job_id].append((kind, attempt, account, total))
    return {job_id: _money_of(lines) for job_id, lines in per_job.items()}


def _money_of(lines: list[tuple[str, int | None, str, int]]) -> JobMoney:
    placed = released = left = 0
    attempts: dict[int, dict[str, int]] = {}
    for kind, attempt, account, total in lines:
        if account == AccountKind.ESCROW:
            left += total
        if kind == TransactionKind.HOLD:
            placed += total
        elif kind == TransactionKind.RELEASE:
            released -= total
        elif (kind, account) in _ATTEMPT_FIELDS and attempt is not None:
            name, sign = _ATTEMPT_FIELDS[(kind, account)]
            line = attempts.setdefault(attempt, {})
            line[name] = line.get(name, 0) + sign * total
    return JobMoney(
        hold_placed_micros=placed,
        hold_released_micros=released,
        hold_left_micros=left,
        attempts={number: AttemptCharges(**line) for number, line in sorted(attempts.items())},
    )


def _signed(kind: str, account: str, sign: int) -> Sum:
    return Sum(
        Case(
            When(
                transaction__kind=kind,
                account__kind=account,
                then=F("amount_micros") * Value(sign),
            ),
            default=Value(0),
            output_field=BigIntegerField(),
        )
    )


def earnings_by_job(user: User) -> QuerySet[Posting, dict[str, Any]]:
    """A host owner's earnings per job, latest first: the gross of the charges of the attempts
    that ran on their hosts, the platform fee, what reversals took back, and the net earned.

    Rows: ``job_id, gross_micros, fee_micros, reversed_gross_micros, reversed_fee_micros,
    last_charged_at`` (the net figures follow from these). The owner's attempts are found
    through the postings on their pending-earnings account (indexed by account), so the
    query reads only their jobs' transactions. A capture whose whole gross was the fee (no
    posting to the host) is not listed."""
    pending = Account.objects.filter(kind=AccountKind.EARNINGS_PENDING, user=user).values("pk")
    own = Posting.objects.filter(account__in=pending, transaction__kind=TransactionKind.CAPTURE)
    own_attempt = own.filter(
        transaction__job_id=OuterRef("transaction__job_id"),
        transaction__attempt=OuterRef("transaction__attempt"),
    )
    return (
        Posting.objects.filter(
            transaction__job_id__in=own.values("transaction__job_id"),
            transaction__kind__in=[TransactionKind.CAPTURE, TransactionKind.REVERSAL],
            account__kind__in=[AccountKind.ESCROW, AccountKind.REVENUE],
        )
        .filter(Exists(own_attempt))
        .values(job_id=F("transaction__job_id"))
        .annotate(
            gross_micros=_signed(TransactionKind.CAPTURE, AccountKind.ESCROW, -1),
            fee_micros=_signed(TransactionKind.CAPTURE, AccountKind.REVENUE, 1),
            reversed_gross_micros=_signed(TransactionKind.REVERSAL, AccountKind.ESCROW, 1),
            reversed_fee_micros=_signed(TransactionKind.REVERSAL, AccountKind.REVENUE, -1),
            last_charged_at=Max("transaction__created_at"),
        )
        .order_by("-last_charged_at", "-job_id")
    )


def restrictions_open(user_id: int) -> QuerySet[AccountRestriction]:
    """The user's own open restrictions (a refund of an organisation's purchase restricts the
    organisation: ``organisation_restrictions_open``)."""
    return AccountRestriction.objects.filter(
        user_id=user_id, lifted_at__isnull=True, payment__organisation__isnull=True
    ).order_by("pk")


def organisation_restrictions_open(organisation_id: int) -> QuerySet[AccountRestriction]:
    return AccountRestriction.objects.filter(
        payment__organisation_id=organisation_id, lifted_at__isnull=True
    ).order_by("pk")


def user_is_restricted(user_id: int) -> bool:
    """Whether a refund or lost dispute left this user owing credits (see AccountRestriction)."""
    return restrictions_open(user_id).exists()


# --- organisations' wallets (docs/pools.md, "The institution pays") ---------------------------


def month_start(now: datetime) -> datetime:
    """The first instant of ``now``'s calendar month, UTC."""
    moment = now.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month_start(now: datetime) -> datetime:
    start = month_start(now)
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


@dataclass(frozen=True)
class MemberSpend:
    """A member's spending from the organisation's wallet in one calendar month (UTC)."""

    month: str  # "2026-12"
    cap_micros: int | None  # None: no cap of their own
    spent_micros: int

    @property
    def cap_left_micros(self) -> int | None:
        return None if self.cap_micros is None else max(0, self.cap_micros - self.spent_micros)


def member_month_spent(*, organisation_id: int, user_id: int, now: datetime | None = None) -> int:
    """Holds in minus releases out of the member's pool-job escrows of this organisation whose
    hold was placed in ``now``'s month (one aggregate, on the pool-escrow index)."""
    now = now or timezone.now()
    escrows = Account.objects.filter(
        kind=AccountKind.ESCROW,
        organisation_id=organisation_id,
        user_id=user_id,
        created_at__gte=month_start(now),
        created_at__lt=next_month_start(now),
    )
    total = Posting.objects.filter(
        account__in=escrows,
        transaction__kind__in=[TransactionKind.HOLD, TransactionKind.RELEASE],
    ).aggregate(total=Coalesce(Sum("amount_micros"), 0))["total"]
    return int(total)


def member_spend(membership: Membership, now: datetime | None = None) -> MemberSpend:
    now = now or timezone.now()
    return MemberSpend(
        month=month_start(now).strftime("%Y-%m"),
        cap_micros=membership.monthly_cap_micros,
        spent_micros=member_month_spent(
            organisation_id=membership.organisation_id, user_id=membership.user_id, now=now
        ),
    )


def organisation_is_restricted(organisation_id: int) -> bool:
    """Whether a refund or lost dispute of one of the organisation's purchases left a shortfall
    not repaid yet (``AccountRestriction`` of a payment that names the organisation)."""
    return organisation_restrictions_open(organisation_id).exists()


def organisation_balances(organisation_id: int) -> WalletBalances:
    """The organisation's credits: available (its wallet) and held (its pool jobs' escrows)."""
    sums = Account.objects.filter(
        Q(kind=AccountKind.ORGANISATION_WALLET) | Q(kind=AccountKind.ESCROW),
        organisation_id=organisation_id,
    ).aggregate(
        available=Coalesce(
            Sum("balance_micros", filter=Q(kind=AccountKind.ORGANISATION_WALLET)), 0
        ),
        held=Coalesce(Sum("balance_micros", filter=Q(kind=AccountKind.ESCROW)), 0),
    )
    available, held = int(sums["available"]), int(sums["held"])
    return {"balance_micros": available + held, "held_micros": held, "available_micros": available}
