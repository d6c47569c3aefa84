"""Billing reports: what moved through the ledger in a period, per day, host or user.

Every figure is summed by the database from postings (never a Python loop over postings), as an
integer of micro-credits, from one aggregate query per table the report shows. What each figure
counts, by the transaction kind and the account the posting is on:

==========================  ==============================================  ====================
figure                      postings                                        sign
==========================  ==============================================  ====================
``credits_bought_micros``   purchase: stripe_clearing -> wallet             the amount bought
``grants_micros``           grant, adjustment: grants -> wallet             net (adjustments
                                                                            can take back)
``gross_charges_micros``    capture: escrow -> earnings_pending + revenue   the escrow's debit
``reversals_micros``        reversal: back into escrow                      the gross undone
``platform_fees_micros``    capture, reversal: revenue                      net of reversals
``host_earnings_micros``    gross - reversals - fees                        net of reversals
``refunds_micros``          refund (and lost disputes): -> stripe_clearing  what went back
``payouts_micros``          payout_paid: payouts_clearing -> stripe         completed payouts
==========================  ==============================================  ====================

So ``gross_charges - reversals = platform_fees + host_earnings`` in every row.

A figure belongs to the day its transaction was posted (UTC). Grouped by host, only charges
(captures and their reversals) have a host: the one the capture names (``host_id``, which
metering passes to ``hold_capture``; a reversal carries the host of the captures it undoes).
Grouped by user, each transaction belongs to one user: the renter (the escrow's owner) for
charges, fees, host earnings and reversals; the buyer for purchases, grants and refunds (the
wallet's owner, else the payment's user); the host owner for payouts. docs/reports.md has the
full description.

The ledger knows hosts only by id. Their names come from the ``HostLabelsProvider`` the hosts
app registered in ``ledger.providers`` (its ``host_labels``), the way reconciliation asks the
jobs app for job facts.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import reduce
from typing import Any, Protocol

from django.apps import apps
from django.db.models import BigIntegerField, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, TruncDate

from accounts.models import User
from config.errors import ValidationFailed
from ledger.models import AccountKind, Posting, TransactionKind
from ledger.providers import providers

# The longest period one report may cover (a year, leap day included), and the default one.
REPORT_MAX_DAYS = 366
REPORT_DEFAULT_DAYS = 30
TOP_COUNT = 10


class BillingGroup(StrEnum):
    DAY = "day"
    HOST = "host"
    USER = "user"


FIGURES = (
    "credits_bought_micros",
    "grants_micros",
    "gross_charges_micros",
    "platform_fees_micros",
    "host_earnings_micros",
    "reversals_micros",
    "refunds_micros",
    "payouts_micros",
)

_CHARGE_KINDS = (TransactionKind.CAPTURE, TransactionKind.REVERSAL)

# figure -> (sign, the postings it sums). host_earnings_micros is derived from three of these.
_SUMMED: dict[str, tuple[int, Q]] = {
    "credits_bought_micros": (
        -1,
        Q(transaction__kind=TransactionKind.PURCHASE, account__kind=AccountKind.STRIPE_CLEARING),
    ),
    "grants_micros": (
        -1,
        Q(
            transaction__kind__in=[TransactionKind.GRANT, TransactionKind.ADJUSTMENT],
            account__kind=AccountKind.GRANTS,
        ),
    ),
    "gross_charges_micros": (
        -1,
        Q(transaction__kind=TransactionKind.CAPTURE, account__kind=AccountKind.ESCROW),
    ),
    "reversals_micros": (
        1,
        Q(transaction__kind=TransactionKind.REVERSAL, account__kind=AccountKind.ESCROW),
    ),
    "platform_fees_micros": (
        1,
        Q(transaction__kind__in=_CHARGE_KINDS, account__kind=AccountKind.REVENUE),
    ),
    "refunds_micros": (
        1,
        Q(transaction__kind=TransactionKind.REFUND, account__kind=AccountKind.STRIPE_CLEARING),
    ),
    "payouts_micros": (
        1,
        Q(
            transaction__kind=TransactionKind.PAYOUT_PAID,
            account__kind=AccountKind.STRIPE_CLEARING,
        ),
    ),
}
_ANY_FIGURE = reduce(operator.or_, (condition for _sign, condition in _SUMMED.values()))
_ANY_CHARGE = Q(transaction__kind__in=_CHARGE_KINDS)


class HostLabel(Protocol):
    """What a report shows of a host besides its id."""

    @property
    def name(self) -> str: ...
    @property
    def owner_id(self) -> int: ...
    @property
    def owner_username(self) -> str: ...


HostLabelsProvider = Callable[[Collection[int]], Mapping[int, HostLabel]]


def host_labels_of(host_ids: Collection[int]) -> Mapping[int, HostLabel]:
    """Names and owners of ``host_ids`` from the registered ``HostLabelsProvider`` (one query
    there); no names when none is registered or there are no ids."""
    provider = providers.host_labels
    if provider is None or not host_ids:
        return {}
    return provider(host_ids)


@dataclass(frozen=True)
class BillingPeriod:
    """Whole UTC days, both ends included: ``first`` 00:00 up to ``last`` + 1 day 00:00."""

    first: date
    last: date

    @property
    def starts_at(self) -> datetime:
        return datetime.combine(self.first, time.min, tzinfo=UTC)

    @property
    def ends_before(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def billing_period_resolve(*, first: date | None, last: date | None, today: date) -> BillingPeriod:
    """The period a report covers: ``last`` defaults to ``today``, ``first`` to the 30 days that
    end on ``last``. Raises ``ValidationFailed`` (``invalid_period``, naming the field) when
    ``first`` is after ``last`` or the period is longer than ``REPORT_MAX_DAYS``."""
    last = today if last is None else last
    if last >= date.max:
        raise ValidationFailed(
            "to is too far in the future", code="invalid_period", fields={"to": ["too late"]}
        )
    first = last - timedelta(days=REPORT_DEFAULT_DAYS - 1) if first is None else first
    if first > last:
        raise ValidationFailed(
            "from must not be after to",
            code="invalid_period",
            fields={"from": ["after to"], "to": ["before from"]},
        )
    period = BillingPeriod(first=first, last=last)
    if period.days > REPORT_MAX_DAYS:
        raise ValidationFailed(
            f"a report covers at most {REPORT_MAX_DAYS} days; this one asks for {period.days}",
            code="invalid_period",
            fields={"from": [f"more than {REPORT_MAX_DAYS} days before to"]},
        )
    return period


Figures = dict[str, int]


@dataclass
class BillingRow:
    """One group of a report: its key (a day, a host id or a user id; None for figures that
    have no host or user) and its figures."""

    key: date | int | None
    figures: Figures = field(default_factory=lambda: dict.fromkeys(FIGURES, 0))
    # The user's name (group by user); hosts are named by the caller, which knows the hosts app.
    username: str | None = None


@dataclass(frozen=True)
class BillingReport:
    period: BillingPeriod
    group_by: BillingGroup
    rows: list[BillingRow]
    totals: Figures
    top_hosts: list[BillingRow]
    top_renters: list[BillingRow]


def _party_user_id() -> Coalesce:
    """The user a transaction belongs to when grouped by user (see the module docstring): the
    owner of its escrow (the renter of a charge) or wallet (a purchase, grant or refund); else
    the buyer of the payment it names (a purchase that went wholly to repay a debt, a refund of
    credits already spent) or the owner of the payout it names (a completed payout)."""
    owner_posting = Subquery(
        Posting.objects.filter(
            transaction_id=OuterRef("transaction_id"),
            account__kind__in=[AccountKind.ESCROW, AccountKind.WALLET],
        )
        .order_by("pk")
        .values("account__user_id")[:1]
    )

    def named(key: str) -> Cast:
        return Cast(KeyTextTransform(key, OuterRef("transaction__metadata")), BigIntegerField())

    # By app label, as AccountRestriction's foreign key names payments: the ledger core
    # imports nothing from ledger.payments (docs/ledger.md).
    payments, payouts = apps.get_model("payments", "Payment"), apps.get_model("payments", "Payout")
    buyer = Subquery(payments.objects.filter(pk=named("payment_id")).values("user_id")[:1])
    payee = Subquery(payouts.objects.filter(pk=named("payout_id")).values("owner_id")[:1])
    return Coalesce(owner_posting, buyer, payee)


def _postings_in(period: BillingPeriod) -> QuerySet[Posting]:
    return Posting.objects.filter(
        _ANY_FIGURE,
        transaction__created_at__gte=period.starts_at,
        transaction__created_at__lt=period.ends_before,
    )


def _sums() -> dict[str, Any]:
    return {name: Coalesce(Sum("amount_micros", filter=q), 0) for name, (_s, q) in _SUMMED.items()}


def _figures_of(row: Mapping[str, Any]) -> Figures:
    figures = {name: sign * int(row[name]) for name, (sign, _q) in _SUMMED.items()}
    figures["host_earnings_micros"] = (
        figures["gross_charges_micros"]
        - figures["reversals_micros"]
        - figures["platform_fees_micros"]
    )
    return {name: figures[name] for name in FIGURES}


def _grouped(
    postings: QuerySet[Posting], group: BillingGroup, *, top: int | None = None
) -> list[BillingRow]:
    """One query: ``postings`` summed per day, host or user; the ``top`` groups by gross
    charges (groups without a host or user left out) when ``top`` is given."""
    if group is BillingGroup.DAY:
        keyed = postings.annotate(group_key=TruncDate("transaction__created_at", tzinfo=UTC))
    elif group is BillingGroup.HOST:
        keyed = postings.filter(_ANY_CHARGE).annotate(group_key=F("transaction__host_id"))
    else:
        keyed = postings.annotate(group_key=_party_user_id())
    grouped = keyed.values("group_key").annotate(**_sums())
    if top is None:
        grouped = grouped.order_by(F("group_key").asc(nulls_last=True))
    else:
        # In the database gross charges are the escrow's debits, a negative sum: the largest
        # gross is the smallest sum, and a group without charges has none below zero.
        grouped = grouped.filter(Q(group_key__isnull=False) & Q(gross_charges_micros__lt=0))
        grouped = grouped.order_by(F("gross_charges_micros").asc(), "group_key")[:top]
    return [BillingRow(key=row["group_key"], figures=_figures_of(row)) for row in grouped]


def _usernames_add(rows: list[BillingRow]) -> None:
    ids = [row.key for row in rows if isinstance(row.key, int)]
    if not ids:
        return
    names = dict(User.objects.filter(pk__in=ids).values_list("pk", "username"))
    for row in rows:
        if isinstance(row.key, int):
            row.username = names.get(row.key)


def _days_filled(period: BillingPeriod, rows: list[BillingRow]) -> list[BillingRow]:
    by_day = {row.key: row for row in rows}
    days = (period.first + timedelta(days=n) for n in range(period.days))
    return [by_day.get(day) or BillingRow(key=day) for day in days]


def billing_report(*, period: BillingPeriod, group_by: BillingGroup) -> BillingReport:
    """The billing figures of ``period`` grouped by day, host or user, their totals, and the
    top hosts and renters by gross charges. At most five queries: the groups, the totals, the
    two top lists and (where there are users) their names. Days without activity are rows of
    zeros."""
    postings = _postings_in(period)
    rows = _grouped(postings, group_by)
    if group_by is BillingGroup.DAY:
        rows = _days_filled(period, rows)
    totals = _figures_of(postings.aggregate(**_sums()))
    top_hosts = _grouped(postings, BillingGroup.HOST, top=TOP_COUNT)
    top_renters = _grouped(postings.filter(_ANY_CHARGE), BillingGroup.USER, top=TOP_COUNT)
    _usernames_add([*(rows if group_by is BillingGroup.USER else []), *top_renters])
    return BillingReport(
        period=period,
        group_by=group_by,
        rows=rows,
        totals=totals,
        top_hosts=top_hosts,
        top_renters=top_renters,
    )
