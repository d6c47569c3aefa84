"""What the jobs app metered for an organisation's pool jobs: the usage side of the
organisation's report (``ledger.organisation_reports``, registered as ``pool_usage``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.db.models import Count, F, Sum
from django.db.models.functions import Coalesce

from jobs.models import JobAttempt
from ledger.organisation_reports import PoolGroup, PoolUsage


def pool_usage(
    organisation_id: int, starts_at: datetime, ends_before: datetime, group_by: str
) -> Mapping[int, PoolUsage]:
    """Per member (the job's owner) or per host: the pool jobs with an attempt that started in
    the period, and those attempts' reported counters (CPU core-ms, GPU-ms = the job's GPUs x
    wall, wall ms), at any rate — zero-rate runs included. One query."""
    key = "job__owner_id" if PoolGroup(group_by) is PoolGroup.MEMBER else "host_id"
    rows = (
        JobAttempt.objects.filter(
            job__pool_id=organisation_id,
            started_at__gte=starts_at,
            started_at__lt=ends_before,
        )
        .values(key)
        .annotate(
            jobs=Count("job_id", distinct=True),
            cpu_ms=Coalesce(Sum("usage_cpu_ms"), 0),
            gpu_ms=Coalesce(Sum(F("usage_wall_ms") * F("job__gpus")), 0),
            wall_ms=Coalesce(Sum("usage_wall_ms"), 0),
        )
        .order_by(key)
    )
    return {
        int(row[key]): PoolUsage(
            jobs=int(row["jobs"]),
            cpu_ms=int(row["cpu_ms"]),
            gpu_ms=int(row["gpu_ms"]),
            wall_ms=int(row["wall_ms"]),
        )
        for row in rows
    }
