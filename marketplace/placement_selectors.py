"""Loads the hosts placement chooses from (the catalog has its own selectors)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import User
from hosts.models import Host, HostStatus
from marketplace.placement import Candidate
from marketplace.selectors import hosts_placeable


def _is_online(host: Host, now: datetime) -> bool:
    """Connected and reported within HOST_OFFLINE_AFTER_SECONDS (as the catalog defines it)."""
    if host.status not in (HostStatus.ONLINE, HostStatus.BUSY) or host.last_seen_at is None:
        return False
    return now - host.last_seen_at <= timedelta(seconds=settings.HOST_OFFLINE_AFTER_SECONDS)


def candidate_from_host(
    host: Host, *, is_visible: bool, now: datetime, user_id: int | None = None
) -> Candidate:
    return Candidate(
        host_id=host.pk,
        name=host.name,
        cpus=host.cpus,
        memory_mb=host.memory_mb,
        gpu_count=host.gpu_count,
        max_job_cpus=host.max_job_cpus,
        max_job_memory_mb=host.max_job_memory_mb,
        max_job_gpus=host.max_job_gpus,
        max_job_timeout_seconds=host.max_job_timeout_seconds,
        rates=host.rates,
        is_online=_is_online(host, now),
        # A quarantined host (hosts.services.host_report_flag, or host faults in a row:
        # host_fault_record) is offered nothing.
        is_available=host.is_available
        and host.quarantined_at is None
        and host.fault_quarantined_at is None,
        is_draining=host.is_draining or host.status == HostStatus.DRAINING,
        is_visible=is_visible,
        allow_network=host.allow_network,
        jobs_finished=host.jobs_finished,
        jobs_lost=host.jobs_lost,
        online_seconds=host.online_seconds,
        tracked_seconds=host.tracked_seconds,
        slots=host.slots,
        is_ready=host.is_ready,
        not_ready_reason=host.not_ready_reason,
        isolation=host.isolation,
        may_use_unisolated=settings.PLACEMENT_ALLOW_UNISOLATED_HOSTS
        or (user_id is not None and host.owner_id == user_id),
        job_disk_mb=host.job_disk_mb,
        disk_free_mb=host.disk_free_mb,
        disk_quota=host.disk_quota,
    )


def placement_candidates(
    user: User, *, pool_id: int | None = None, now: datetime | None = None
) -> list[Candidate]:
    """Every host a job of the user (in ``pool_id``, or none) may go to that is connected,
    not draining and not quarantined (fit is decided later): ``hosts_placeable``'s rule."""
    now = now or timezone.now()
    hosts = hosts_placeable(user=user, pool_id=pool_id).filter(
        status__in=[HostStatus.ONLINE, HostStatus.BUSY],
        is_draining=False,
        quarantined_at__isnull=True,
    )
    return [
        candidate_from_host(h, is_visible=True, now=now, user_id=user.pk)
        for h in hosts.order_by("pk")
    ]


def placement_candidate(
    user: User, host_id: int, *, pool_id: int | None = None, now: datetime | None = None
) -> Candidate:
    """One chosen host, whatever its state (the caller reports why it doesn't fit).

    Raises Host.DoesNotExist when there is no such host or a job of the user (in ``pool_id``,
    or none) may not go there (``hosts_placeable``): a private host stays invisible rather
    than "not visible to you".
    """
    host = hosts_placeable(user=user, pool_id=pool_id).get(pk=host_id)
    return candidate_from_host(host, is_visible=True, now=now or timezone.now(), user_id=user.pk)
