"""A job's disk on its host: the sizes of /work, /outputs and /tmp the renter asks for, each
defaulted and bounded by settings (JOB_WORK_MB, JOB_OUTPUTS_MB, JOB_TMP_MB, JOB_DISK_MB_MAX).
The submit (jobs.services.submit) and the quote (marketplace.quote_apis) check them alike, so a
quote lists the hosts the same submit would be placed on."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from config.errors import ValidationFailed


@dataclass(frozen=True)
class DiskRequest:
    """The sizes the renter asked for (None: the default of each)."""

    work_mb: int | None = None
    outputs_mb: int | None = None
    tmp_mb: int | None = None


@dataclass(frozen=True)
class DiskLimits:
    work_mb: int
    outputs_mb: int
    tmp_mb: int


def disk_check(disk: DiskRequest) -> DiskLimits:
    """Each size given, or its default, within 1..JOB_DISK_MB_MAX (a 400 names each bad one)."""
    defaults = {
        "work_mb": settings.JOB_WORK_MB,
        "outputs_mb": settings.JOB_OUTPUTS_MB,
        "tmp_mb": settings.JOB_TMP_MB,
    }
    given = {name: getattr(disk, name) for name in defaults}
    sizes = {n: defaults[n] if mb is None else mb for n, mb in given.items()}
    bad = [name for name, mb in sizes.items() if not 1 <= mb <= settings.JOB_DISK_MB_MAX]
    if bad:
        why = f"must be 1 to {settings.JOB_DISK_MB_MAX} MB"
        raise ValidationFailed(
            f"{', '.join(f'disk.{n}' for n in bad)} {why}",
            code="invalid_disk",
            fields={f"disk.{n}": [why] for n in bad},
        )
    return DiskLimits(**sizes)
