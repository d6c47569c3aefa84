"""Which hosts fit a job, what it would cost there, and which one to offer it to first.

Pure: no database. The callers load ``Candidate``s (``marketplace.placement_selectors``) and
add what the hosts already run (``jobs.selectors.host_loads``).

Cost estimate (micro-credits, rounded up once, integer/Fraction arithmetic only)::

    per_hour = cpus * cpu_core_hour + memory_mb / 1024 * memory_gb_hour + gpus * gpu_hour
    estimate(seconds) = ceil(per_hour * seconds / 3600)

CPU is billed on CPU time used, so ``cpus * cpu_core_hour`` is the ceiling (every requested
core busy for the whole run); memory and GPUs are billed as reserved. A GB is 1024 MB.

Ranking (auto placement): among hosts that fit, lowest ``score`` first, where::

    reliability = (finished + 4) / (finished + lost + 5) * (online_s + 3600) / (tracked_s + 3600)
    score       = estimate(timeout) / reliability

i.e. the expected price of one run that completes, if a lost run has to be paid again
elsewhere. The first factor is the share of accepted jobs the host finished, with a prior of
four finished in five (a new host starts at 0.8, not at zero or one); the second is its
uptime, with an hour of grace so a new host is not judged on its first minutes. Ties go to
the more reliable host, then the lower host id (deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from agent.metering import MB_PER_GB, Rates

SECONDS_PER_HOUR = 3600
BUSY_REASON = "the host is busy with other jobs"
# In every disk misfit's reason ("the job needs N MB of disk; the host allows M").
DISK_REASON_MARK = "MB of disk; the host allows"


@dataclass(frozen=True)
class JobSpec:
    cpus: Decimal
    memory_mb: int
    gpus: int
    timeout_seconds: int
    # The disk it needs on the host: /work + /outputs + /tmp + its inputs, in MB (0: none
    # asked, as a quote without a data plane).
    disk_mb: int = 0


@dataclass(frozen=True)
class Candidate:
    """A host as placement sees it; ``used_*`` is what its open attempts already take."""

    host_id: int
    name: str
    cpus: int
    memory_mb: int
    gpu_count: int
    max_job_cpus: int
    max_job_memory_mb: int
    max_job_gpus: int
    max_job_timeout_seconds: int
    rates: Rates
    is_online: bool
    is_available: bool
    is_draining: bool
    is_visible: bool
    allow_network: bool = False
    jobs_finished: int = 0
    jobs_lost: int = 0
    online_seconds: int = 0
    tracked_seconds: int = 0
    used_cpus: Decimal = Decimal(0)
    used_memory_mb: int = 0
    used_gpus: int = 0
    # Scheduling (docs/jobs.md "Placement"): how many jobs the agent runs at once and how
    # many its open attempts take; its self-check; "none" runs jobs without isolation, which
    # only the host's owner may use ("" = never said, treated as isolated: it never connected),
    # or anyone where PLACEMENT_ALLOW_UNISOLATED_HOSTS is set (the local demo only).
    slots: int = 1
    used_jobs: int = 0
    is_ready: bool = True
    not_ready_reason: str = ""
    isolation: str = ""
    may_use_unisolated: bool = False
    # Disk (docs/hosts.md, "Disk"): the most one job may ask for, as the agent said (None: an
    # older agent that never said; its free disk is the limit then).
    job_disk_mb: int | None = None
    disk_free_mb: int = 0
    disk_quota: bool = False


@dataclass(frozen=True)
class Ranked:
    candidate: Candidate
    per_hour_micros: int
    estimate_micros: int
    reliability: Fraction
    score: Fraction


def disk_needed_mb(*, work_mb: int, outputs_mb: int, tmp_mb: int, inputs_bytes: int) -> int:
    """A job's disk on its host: its three file systems and its inputs (rounded up to MB)."""
    return work_mb + outputs_mb + tmp_mb + math.ceil(inputs_bytes / (1024 * 1024))


def _per_hour_exact(spec: JobSpec, rates: Rates) -> Fraction:
    return (
        Fraction(spec.cpus) * rates.cpu_core_hour_micros
        + Fraction(spec.memory_mb, MB_PER_GB) * rates.memory_gb_hour_micros
        + spec.gpus * rates.gpu_hour_micros
    )


def per_hour_micros(spec: JobSpec, rates: Rates) -> int:
    """The most one hour of this job can cost at these rates, rounded up."""
    return math.ceil(_per_hour_exact(spec, rates))


def cost_estimate_micros(spec: JobSpec, rates: Rates, seconds: int) -> int:
    """The most ``seconds`` of this job can cost at these rates, rounded up."""
    return math.ceil(_per_hour_exact(spec, rates) * seconds / SECONDS_PER_HOUR)


def minimum_cap_micros(spec: JobSpec, rates: Rates) -> int:
    """The smallest cost cap accepted: one minute at these rates (at least 1 µcr)."""
    return max(1, cost_estimate_micros(spec, rates, 60))


def reliability(candidate: Candidate) -> Fraction:
    finished, lost = candidate.jobs_finished, candidate.jobs_lost
    jobs_share = Fraction(finished + 4, finished + lost + 5)
    uptime = Fraction(
        candidate.online_seconds + SECONDS_PER_HOUR, candidate.tracked_seconds + SECONDS_PER_HOUR
    )
    return jobs_share * min(uptime, Fraction(1))


def _limit(offered: int, spec_value: int) -> int:
    """A host's per-job limit: its own setting, or its specs where the setting is 0."""
    return offered if offered > 0 else spec_value


def misfit_reason(
    spec: JobSpec, candidate: Candidate, *, max_cost_micros: int | None = None
) -> str | None:
    """Why this host can't take the job now, or None when it can."""
    c = candidate
    cpu_limit = _limit(c.max_job_cpus, c.cpus)
    memory_limit = _limit(c.max_job_memory_mb, c.memory_mb)
    gpu_limit = _limit(c.max_job_gpus, c.gpu_count)
    disk_limit = c.disk_free_mb if c.job_disk_mb is None else c.job_disk_mb
    checks: list[tuple[bool, str]] = [
        (not c.is_visible, "the host is not visible to you"),
        (not c.is_online, "the host is offline"),
        (c.is_draining, "the host is draining"),
        (not c.is_available, "the host is not available now"),
        (not c.is_ready, "the host is not ready to run jobs now"),
        (
            c.isolation == "none" and not c.may_use_unisolated,
            "the host runs jobs without isolation; only its owner may use it",
        ),
        (
            spec.cpus > cpu_limit,
            f"the job needs {Decimal(spec.cpus).normalize():f} CPUs, the host offers {cpu_limit}",
        ),
        (
            spec.memory_mb > memory_limit,
            f"the job needs {spec.memory_mb} MB of memory, the host offers {memory_limit}",
        ),
        (spec.gpus > gpu_limit, f"the job needs {spec.gpus} GPUs, the host offers {gpu_limit}"),
        (
            spec.disk_mb > disk_limit,
            f"the job needs {spec.disk_mb} {DISK_REASON_MARK} {disk_limit}",
        ),
        (
            c.max_job_timeout_seconds > 0 and spec.timeout_seconds > c.max_job_timeout_seconds,
            f"the timeout is over the host's limit of {c.max_job_timeout_seconds} seconds",
        ),
        (
            spec.cpus > cpu_limit - c.used_cpus
            or spec.memory_mb > memory_limit - c.used_memory_mb
            or spec.gpus > gpu_limit - c.used_gpus
            or c.used_jobs >= c.slots,
            BUSY_REASON,
        ),
    ]
    if max_cost_micros is not None:
        minimum = minimum_cap_micros(spec, c.rates)
        checks.append(
            (
                max_cost_micros < minimum,
                f"max_cost_micros must cover one minute at the host's rates ({minimum})",
            )
        )
    return next((message for failed, message in checks if failed), None)


def ranked_entry(spec: JobSpec, candidate: Candidate) -> Ranked:
    estimate = cost_estimate_micros(spec, candidate.rates, spec.timeout_seconds)
    trust = reliability(candidate)
    return Ranked(
        candidate=candidate,
        per_hour_micros=per_hour_micros(spec, candidate.rates),
        estimate_micros=estimate,
        reliability=trust,
        score=Fraction(estimate) / trust,
    )


def hosts_rank(
    spec: JobSpec,
    candidates: Iterable[Candidate],
    *,
    max_cost_micros: int | None = None,
    exclude: Iterable[int] = (),
) -> list[Ranked]:
    """The hosts that fit, best first (see the module docstring for the order)."""
    skipped = set(exclude)
    fitting = [
        ranked_entry(spec, c)
        for c in candidates
        if c.host_id not in skipped
        and misfit_reason(spec, c, max_cost_micros=max_cost_micros) is None
    ]
    return sorted(fitting, key=lambda r: (r.score, -r.reliability, r.candidate.host_id))
