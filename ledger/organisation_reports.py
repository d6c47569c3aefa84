"""An organisation's report: its pool jobs' usage and money per member or per host.

The billing report's shape (``ledger.reports``: the same period rules, the same charge figures
summed by the database from the postings), scoped to the jobs the organisation's wallet paid
for (the escrows whose ``organisation`` is it), with the usage the jobs app metered for them
beside the money — also where the pool ran its members free and nothing was charged
(docs/reports.md, "An organisation's report").

Per **member**: the renter of each job (the escrow's user); per **host**: the host each charge
ran on (``host_id``), and for usage the host each attempt ran on. Money figures belong to the
day their transaction was posted; usage to the day its attempt started (the jobs app's
``PoolUsageProvider``, registered in ``ledger.providers`` as ``pool_usage``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from django.db.models import Q

from accounts.models import User
from ledger.models import Account, AccountKind, Posting
from ledger.providers import providers
from ledger.reports import (
    _ANY_CHARGE,
    BillingGroup,
    BillingPeriod,
    _figures_of,
    _grouped,
    _sums,
)

MONEY_FIGURES = (
    "gross_charges_micros",
    "platform_fees_micros",
    "host_earnings_micros",
    "reversals_micros",
)
USAGE_FIGURES = ("jobs", "cpu_ms", "gpu_ms", "wall_ms")


class PoolGroup(StrEnum):
    MEMBER = "member"
    HOST = "host"


@dataclass(frozen=True)
class PoolUsage:
    """What the jobs app metered for one member or host in a period (the attempts that started
    in it): distinct jobs, CPU core-ms, GPU-ms (GPUs x wall), wall ms."""

    jobs: int = 0
    cpu_ms: int = 0
    gpu_ms: int = 0
    wall_ms: int = 0


# (organisation id, period start, period end (excluded), "member" or "host") -> usage per
# member user id or host id.
PoolUsageProvider = Callable[[int, datetime, datetime, str], Mapping[int, PoolUsage]]


@dataclass
class PoolRow:
    key: int | None  # a member's user id, a host id; None: charges posted without a host
    usage: PoolUsage = field(default_factory=PoolUsage)
    money: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MONEY_FIGURES, 0))
    username: str | None = None


@dataclass(frozen=True)
class PoolReport:
    organisation_id: int
    period: BillingPeriod
    group_by: PoolGroup
    rows: list[PoolRow]
    totals_usage: PoolUsage
    totals_money: dict[str, int]


def _pool_charges(organisation_id: int, period: BillingPeriod) -> Q:
    paid = Account.objects.filter(kind=AccountKind.ESCROW, organisation_id=organisation_id)
    return Q(
        _ANY_CHARGE,
        Q(account__kind__in=[AccountKind.ESCROW, AccountKind.REVENUE]),
        transaction__job_id__in=paid.values("job_id"),
        transaction__created_at__gte=period.starts_at,
        transaction__created_at__lt=period.ends_before,
    )


def _usage_of(
    organisation_id: int, period: BillingPeriod, group: PoolGroup
) -> dict[int, PoolUsage]:
    provider = providers.pool_usage
    if provider is None:
        return {}
    return dict(provider(organisation_id, period.starts_at, period.ends_before, group.value))


def _usage_sum(usages: list[PoolUsage]) -> PoolUsage:
    return PoolUsage(
        jobs=sum(u.jobs for u in usages),
        cpu_ms=sum(u.cpu_ms for u in usages),
        gpu_ms=sum(u.gpu_ms for u in usages),
        wall_ms=sum(u.wall_ms for u in usages),
    )


def organisation_report(
    *, organisation_id: int, period: BillingPeriod, group_by: PoolGroup
) -> PoolReport:
    """The organisation's pool jobs in ``period``, per member or per host: jobs and usage, and
    what they were charged, the platform's fee, the hosts' earnings and the reversals (charges
    of lost work given back), with the totals. Rows are ordered by key (no host last); a key
    appears when it has usage or charges. Three queries and the usage provider's."""
    postings = Posting.objects.filter(_pool_charges(organisation_id, period))
    billing_group = BillingGroup.USER if group_by is PoolGroup.MEMBER else BillingGroup.HOST
    money = {
        row.key: row.figures
        for row in _grouped(postings, billing_group)
        if row.key is None or isinstance(row.key, int)
    }
    usage = _usage_of(organisation_id, period, group_by)
    keys = sorted({key for key in money if isinstance(key, int)} | set(usage))
    rows = [
        PoolRow(
            key=key,
            usage=usage.get(key, PoolUsage()),
            money={name: money[key][name] for name in MONEY_FIGURES}
            if key in money
            else dict.fromkeys(MONEY_FIGURES, 0),
        )
        for key in keys
    ]
    if None in money:  # charges posted without a host
        rows.append(PoolRow(key=None, money={n: money[None][n] for n in MONEY_FIGURES}))
    if group_by is PoolGroup.MEMBER:
        ids = [row.key for row in rows if row.key is not None]
        names = dict(User.objects.filter(pk__in=ids).values_list("pk", "username"))
        for row in rows:
            row.username = names.get(row.key) if row.key is not None else None
    totals = _figures_of(postings.aggregate(**_sums()))
    return PoolReport(
        organisation_id=organisation_id,
        period=period,
        group_by=group_by,
        rows=rows,
        totals_usage=_usage_sum([row.usage for row in rows]),
        totals_money={name: totals[name] for name in MONEY_FIGURES},
    )
