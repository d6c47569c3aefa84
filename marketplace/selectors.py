"""Catalog reads: which hosts a user may see, filtered and ordered, with a fresh status.

Definitions the API documents:

- **price** (``price_micros``): ``cpu_core_hour_micros + memory_gb_hour_micros`` — what one hour
  of one fully used core with 1 GB of memory reserved costs on the host. GPU hours are priced
  separately (``gpu_price`` orders by ``gpu_hour_micros``).
- **reliability** (``reliability_bps``, 0..10000): uptime x completion, see ``hosts.models``.
- **online**: the host's agent is connected (online, busy or draining) and reported within
  ``HOST_OFFLINE_AFTER_SECONDS``.
- **accepting**: reported within the cutoff with status online or busy, available by the
  owner's policy (``is_available``) and not drained by the owner: hosts a job can go to now.

Every query here is one SQL statement (plus the count of the paginator). Ties are broken by
id in the direction of the last key, so each ordering and its reverse are served by one index
on ``(key, id)`` (``hosts.models.Host.Meta.indexes``) and the keyset paginator
(``config.api.KeysetPagination``) can seek with a row comparison (docs/hosts.md, "Pages").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import Membership, Organisation, User
from config.errors import NotFound, ValidationFailed
from hosts.models import Host, HostStatus, HostVisibility, last_seen_key
from hosts.selectors import status_fresh

# ordering keys of the API -> model fields (or the annotation below); every one is non-null
ORDERINGS: dict[str, str] = {
    "price": "price_micros",
    "reliability": "reliability_bps",
    "gpu_price": "gpu_hour_micros",
    "cpus": "cpus",
    "memory": "memory_mb",
    "last_seen": "last_seen_key",
}
# last_seen orders by last_seen_at with a never-seen host as seen at the epoch (hosts.models)
LAST_SEEN_KEY = "last_seen_key"
CONNECTED = (HostStatus.ONLINE, HostStatus.BUSY, HostStatus.DRAINING)


@dataclass(frozen=True)
class CatalogFilters:
    arch: str | None = None
    os: str | None = None
    min_cpus: int | None = None
    min_memory_mb: int | None = None
    gpu: bool | None = None
    min_gpus: int | None = None
    min_disk_mb: int | None = None
    max_price_micros: int | None = None
    online: bool | None = None
    accepting: bool | None = None
    pool: int | None = None  # an organisation the user belongs to: its pool's hosts only
    ordering: tuple[str, ...] = field(default=("price",))


def hosts_visible(*, user: User) -> QuerySet[Host]:
    """Public hosts outside hidden pools, the hosts of every pool the user belongs to, and
    the user's own; never those of a deactivated owner (docs/pools.md, "The model")."""
    return _visible(user.pk)


def _visible(user_id: int) -> QuerySet[Host]:
    organisations = Membership.objects.filter(user_id=user_id).values("organisation_id")
    # "not owned by a deactivated user" rather than a join on the owner: PostgreSQL keeps a
    # NOT IN as one hashed set of the (few) deactivated users checked per row, where a join,
    # planned from a poor estimate for a deep keyset page, was a nested loop over every user
    # for every host (80 ms instead of 1). The hidden pools are a small set the same way.
    deactivated = User.objects.filter(is_active=False).values("id")
    return Host.objects.filter(
        (Q(visibility=HostVisibility.PUBLIC) & ~Q(organisation_id__in=_hidden_pools()))
        | Q(organisation_id__in=organisations)
        | Q(owner_id=user_id),
    ).exclude(owner_id__in=deactivated)


def _hidden_pools() -> QuerySet[Organisation, int]:
    return Organisation.objects.filter(pool_hidden=True).values_list("id", flat=True)


def hosts_placeable(*, user: User, pool_id: int | None) -> QuerySet[Host]:
    """The one placement rule (docs/pools.md, "Placement"): the hosts a job of ``user`` may
    be offered, whatever their state (placement decides fit and room).

    A pool job (``pool_id``): only the pool's hosts, and only while the user is a member;
    nothing else, ever. Any other job: the hosts the user may see, less every host of a hidden
    pool (those take only their pool's jobs, even a member's or their owner's own public job).
    """
    if pool_id is not None:
        deactivated = User.objects.filter(is_active=False).values("id")
        # one statement: the membership is a subquery (none: no host)
        mine = Membership.objects.filter(user=user, organisation_id=pool_id)
        return Host.objects.filter(organisation_id__in=mine.values("organisation_id")).exclude(
            owner_id__in=deactivated
        )
    return hosts_visible(user=user).exclude(organisation_id__in=_hidden_pools())


def hosts_catalog(
    *, user: User, filters: CatalogFilters, now: datetime | None = None
) -> QuerySet[Host]:
    """The catalog page query: visible hosts matching ``filters``, ``current_status`` annotated."""
    _pool_check(user, filters)
    return _catalog(user.pk, filters, now or timezone.now())


@dataclass(frozen=True)
class CatalogQuery:
    """``hosts_catalog`` as a shape and its values, for a statement compiled once per shape
    (config.statements): the filters given and the booleans and ordering chosen make the shape;
    the user, the freshness cutoff and every other filter's value are the values."""

    shape: tuple[Any, ...]
    values: dict[str, Any]
    filters: CatalogFilters

    def build(self, values: Mapping[str, Any]) -> QuerySet[Host]:
        """``hosts_catalog``'s queryset for these values (the real ones or sentinels)."""
        given = {name: values[name] for name in _VALUE_FILTERS if name in values}
        # now - HOST_OFFLINE_AFTER_SECONDS is the cutoff itself, so the cutoff is the value
        now = values["seen_after"] + timedelta(seconds=settings.HOST_OFFLINE_AFTER_SECONDS)
        return _catalog(values["user"], replace(self.filters, **given), now)


def catalog_query(
    *, user: User, filters: CatalogFilters, now: datetime | None = None
) -> CatalogQuery:
    """What ``hosts_catalog`` reads, split into its shape and its values (no query is built)."""
    _pool_check(user, filters)
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.HOST_OFFLINE_AFTER_SECONDS)
    values: dict[str, Any] = {"user": user.pk, "seen_after": cutoff}
    shape: list[Any] = ["hosts_catalog"]
    for name in CatalogFilters.__dataclass_fields__:
        value = getattr(filters, name)
        if name in _VALUE_FILTERS and value is not None:
            # beyond every column (64-bit at most): matches nothing, as the value itself would
            values[name] = min(value, _INT64_MAX) if isinstance(value, int) else value
            shape.append((name, "given"))
        else:
            shape.append((name, value))
    return CatalogQuery(tuple(shape), values, filters)


# The filters whose value goes into the statement as a parameter; the booleans pick a condition
# (part of the shape) and the ordering is the shape itself.
_VALUE_FILTERS = (
    "arch",
    "os",
    "min_cpus",
    "min_memory_mb",
    "min_gpus",
    "min_disk_mb",
    "max_price_micros",
    "pool",
)
_INT64_MAX = 2**63 - 1


def _pool_check(user: User, filters: CatalogFilters) -> None:
    if filters.pool is None:
        return
    if not Membership.objects.filter(user=user, organisation_id=filters.pool).exists():
        raise ValidationFailed(
            "no such pool",
            code="unknown_pool",
            fields={"pool": [f"no pool #{filters.pool} that you belong to"]},
        )


def _catalog(user_id: int, filters: CatalogFilters, now: datetime) -> QuerySet[Host]:
    hosts = _visible(user_id).annotate(current_status=status_fresh(now))
    if filters.pool is not None:
        hosts = hosts.filter(organisation_id=filters.pool)
    if any(key.lstrip("-") == "last_seen" for key in filters.ordering):
        hosts = hosts.annotate(**{LAST_SEEN_KEY: last_seen_key()})
    hosts = hosts.filter(_filters_q(filters, now))
    return hosts.order_by(*_order_by(filters.ordering))


def host_listing_get(*, user: User, host_id: int, now: datetime | None = None) -> Host:
    host = (
        hosts_visible(user=user)
        .annotate(current_status=status_fresh(now or timezone.now()))
        .filter(pk=host_id)
        .first()
    )
    if host is None:
        raise NotFound("no such host")
    return host


def hosts_accepting_jobs(*, now: datetime | None = None) -> QuerySet[Host]:
    """Hosts a job may be placed on now, regardless of who asks (placement narrows further)."""
    return Host.objects.filter(_accepting_q(now or timezone.now()))


def _fresh_q(now: datetime) -> Q:
    cutoff = now - timedelta(seconds=settings.HOST_OFFLINE_AFTER_SECONDS)
    return Q(last_seen_at__gte=cutoff)


def _accepting_q(now: datetime) -> Q:
    return (
        _fresh_q(now)
        & Q(status__in=(HostStatus.ONLINE, HostStatus.BUSY))
        & Q(is_available=True, is_ready=True, is_draining=False)
        & Q(quarantined_at__isnull=True, fault_quarantined_at__isnull=True)
    )


def _filters_q(filters: CatalogFilters, now: datetime) -> Q:
    q = Q()
    if filters.arch:
        q &= Q(arch=filters.arch)
    if filters.os:
        q &= Q(os=filters.os)
    if filters.min_cpus is not None:
        q &= Q(cpus__gte=filters.min_cpus)
    if filters.min_memory_mb is not None:
        q &= Q(memory_mb__gte=filters.min_memory_mb)
    if filters.gpu is not None:
        q &= Q(gpu_count__gte=1) if filters.gpu else Q(gpu_count=0)
    if filters.min_gpus is not None:
        q &= Q(gpu_count__gte=filters.min_gpus)
    if filters.min_disk_mb is not None:  # placement's disk limit (marketplace/placement.py)
        q &= Q(job_disk_mb__gte=filters.min_disk_mb) | Q(
            job_disk_mb__isnull=True, disk_free_mb__gte=filters.min_disk_mb
        )
    if filters.max_price_micros is not None:
        q &= Q(price_micros__lte=filters.max_price_micros)
    if filters.online is not None:
        online = _fresh_q(now) & Q(status__in=CONNECTED)
        q &= online if filters.online else ~online
    if filters.accepting is not None:
        accepting = _accepting_q(now)
        q &= accepting if filters.accepting else ~accepting
    return q


def _order_by(ordering: tuple[str, ...]) -> list[str]:
    """API ordering keys (``price``, ``-reliability``) to fields, ending with the pk in the
    direction of the last key (``-price`` is ``-price_micros, -id``: the reverse of ``price``)."""
    fields: list[str] = []
    for key in ordering:
        descending = key.startswith("-")
        name = ORDERINGS[key.lstrip("-")]
        fields.append(f"-{name}" if descending else name)
    fields.append("-id" if ordering[-1].startswith("-") else "id")
    return fields
