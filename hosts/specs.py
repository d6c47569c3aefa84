"""Checking the specs an agent reports, before they reach the catalog.

Agents run on other people's machines, so their reports are untrusted input: the shape comes
from ``agent.protocol.HostSpecs`` and the bounds below keep an absurd report (a million cores)
out of the catalog. Plain functions, no database.
"""

from __future__ import annotations

from typing import Any

from django.db.models import CharField

from agent.protocol import GpuSpec, HostSpecs, ProtocolError, payload_check
from config.errors import ValidationFailed
from hosts.models import SPEC_FIELDS, Host

MAX_CPUS = 4096
MAX_MEMORY_MB = 64 * 1024 * 1024  # 64 TiB
MAX_DISK_MB = 1024 * 1024 * 1024  # 1 EiB
MAX_GPUS = 64
MAX_GPU_MEMORY_MB = 4 * 1024 * 1024
KNOWN_OS = {"linux", "darwin", "windows", "freebsd"}
# The names the agent reports for the common machine types; anything else is kept as is.
ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "armv8": "arm64"}

# A text spec may be as long as its column.
_TEXT_LIMITS = {
    field.name: field.max_length
    for field in Host._meta.get_fields()
    if field.name in SPEC_FIELDS and isinstance(field, CharField) and field.max_length
}


def arch_normalise(arch: str) -> str:
    lowered = arch.strip().lower()
    return ARCH_ALIASES.get(lowered, lowered)


def specs_clean(raw: Any) -> HostSpecs:
    """Return the specs in canonical form, or raise ValidationFailed (code ``invalid_specs``)."""
    try:
        payload_check(HostSpecs, raw, "specs")
    except ProtocolError as exc:
        raise ValidationFailed(exc.message, code="invalid_specs") from None
    problems: dict[str, str] = {}
    for name, limit in _TEXT_LIMITS.items():
        if len(raw[name]) > limit:
            problems[name] = f"at most {limit} characters"
    if not 1 <= raw["cpus"] <= MAX_CPUS:
        problems["cpus"] = f"must be between 1 and {MAX_CPUS}"
    if not 1 <= raw["memory_mb"] <= MAX_MEMORY_MB:
        problems["memory_mb"] = f"must be between 1 and {MAX_MEMORY_MB}"
    if not 0 <= raw["disk_free_mb"] <= MAX_DISK_MB:
        problems["disk_free_mb"] = f"must be between 0 and {MAX_DISK_MB}"
    job_disk_mb = raw.get("job_disk_mb")
    if job_disk_mb is not None and not 0 <= job_disk_mb <= MAX_DISK_MB:
        problems["job_disk_mb"] = f"must be between 0 and {MAX_DISK_MB}"
    if raw["os"].lower() not in KNOWN_OS:
        problems["os"] = f"must be one of {sorted(KNOWN_OS)}"
    gpus_problem = _gpus_problem(raw["gpus"])
    if gpus_problem:
        problems["gpus"] = gpus_problem
    if problems:
        raise ValidationFailed(
            "the agent reported impossible specs", code="invalid_specs", fields=problems
        )
    cleaned = HostSpecs(
        cpu_model=raw["cpu_model"].strip(),
        arch=arch_normalise(raw["arch"]),
        cpus=raw["cpus"],
        memory_mb=raw["memory_mb"],
        disk_free_mb=raw["disk_free_mb"],
        os=raw["os"].lower(),
        os_version=raw["os_version"].strip(),
        gpus=[GpuSpec(model=gpu["model"][:200], memory_mb=gpu["memory_mb"]) for gpu in raw["gpus"]],
        docker_available=raw["docker_available"],
    )
    if "disk_quota" in raw:
        cleaned["disk_quota"] = raw["disk_quota"]
    if job_disk_mb is not None:
        cleaned["job_disk_mb"] = job_disk_mb
    return cleaned


def _gpus_problem(gpus: list[GpuSpec]) -> str | None:
    if len(gpus) > MAX_GPUS:
        return f"at most {MAX_GPUS} GPUs"
    for gpu in gpus:
        if not 0 <= gpu["memory_mb"] <= MAX_GPU_MEMORY_MB:
            return f"GPU memory must be between 0 and {MAX_GPU_MEMORY_MB} MB"
    return None
