"""Reads for hosts: the owner's own hosts, and the fresh-status expression the catalog uses."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db.models import Case, CharField, Exists, F, OuterRef, QuerySet, Value, When
from django.utils import timezone

from accounts.models import User
from config.errors import NotFound
from hosts.models import Host, HostCredential, HostStatus


def status_fresh(now: datetime) -> Case:
    """The host's status, but ``offline`` once its last report is older than the cutoff.

    The reaper task marks such hosts offline in the table too; this covers the seconds before
    it runs, so nobody sees a dead host as online.
    """
    cutoff = now - timedelta(seconds=settings.HOST_OFFLINE_AFTER_SECONDS)
    return Case(
        When(last_seen_at__gte=cutoff, then=F("status")),
        default=Value(HostStatus.OFFLINE),
        output_field=CharField(),
    )


def hosts_owned(*, owner: User, now: datetime | None = None) -> QuerySet[Host]:
    """The owner's hosts with ``current_status`` and ``has_live_credential`` annotated."""
    live_credentials = HostCredential.objects.filter(host=OuterRef("pk"), revoked_at__isnull=True)
    return (
        Host.objects.filter(owner=owner)
        .annotate(
            current_status=status_fresh(now or timezone.now()),
            has_live_credential=Exists(live_credentials),
        )
        .order_by("id")
    )


def host_owned_get(*, owner: User, host_id: int, now: datetime | None = None) -> Host:
    """One of the owner's hosts; NotFound for anyone else's (no hint that it exists)."""
    host = hosts_owned(owner=owner, now=now).filter(pk=host_id).first()
    if host is None:
        raise NotFound("no such host")
    return host


class HostLabel(NamedTuple):
    name: str
    owner_id: int
    owner_username: str


def host_labels(host_ids: Collection[int]) -> dict[int, HostLabel]:
    """Names and owners of hosts by id, in one query. Billing reports name the hosts the ledger
    knows only by id through this (registered in ``ledger.providers``). Hosts that no longer exist
    are left out."""
    if not host_ids:
        return {}
    rows = Host.objects.filter(pk__in=list(host_ids)).values_list(
        "pk", "name", "owner_id", "owner__username"
    )
    return {pk: HostLabel(name, owner_id, username) for pk, name, owner_id, username in rows}
