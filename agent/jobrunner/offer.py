"""From a ``job.offer`` to what the runtime runs: the JobSpec and the local cost cap."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agent.metering import (
    Rates,
    Reservation,
    charge_decide,
    counters_from_report,
    seconds_until_cap,
)
from agent.protocol import DiskLimits, InputRef, JobOffer, PoolRef
from agent.runtime.blobcache import BlobCache
from agent.runtime.hardening import job_networks_refusal
from agent.runtime.types import DiskSpec, InputSpec, JobSpec, JobSpecError, PoolSpec


def spec_from_offer(offer: JobOffer) -> JobSpec:
    """The offer as a validated JobSpec; raises JobSpecError naming what is wrong."""
    files: dict[str, bytes] = {}
    for item in offer["files"]:
        path = item["path"]
        if path in files:
            raise JobSpecError(f"the file {path!r} appears twice")
        try:
            files[path] = base64.b64decode(item["content_b64"], validate=True)
        except (binascii.Error, ValueError):
            raise JobSpecError(f"the content of {path!r} is not valid base64") from None
    limits = offer["limits"]
    inputs = offer.get("inputs") or []
    if not isinstance(inputs, list):
        raise JobSpecError("inputs must be a list")
    archive = offer.get("code_archive")
    task = offer.get("task")
    return JobSpec(
        job_id=offer["job_id"],
        attempt=offer["attempt"],
        files=files,
        entrypoint=offer["entrypoint"],
        requirements=tuple(offer["requirements"]),
        cpus=float(limits["cpus"]),
        memory_mb=limits["memory_mb"],
        gpus=limits["gpus"],
        timeout_seconds=limits["timeout_seconds"],
        network_allowed=limits["allow_network"],
        inputs=tuple(input_from_offer(item) for item in inputs),
        code_archive=input_from_offer(archive) if archive else None,
        disk=disk_from_offer(offer.get("disk")),
        task_index=task["index"] if task else None,
        task_count=task["count"] if task else None,
        pool=pool_from_offer(offer.get("pool")),
    )


def pool_from_offer(pool: PoolRef | None) -> PoolSpec | None:
    """The offer's ``pool`` (docs/pools.md), checked again: the rules must be CIDRs and host
    names; the output store and airlock are the uploads' (agent/jobrunner/uploads.py)."""
    if pool is None:
        return None
    if not isinstance(pool, dict):
        raise JobSpecError("pool must be an object")
    return PoolSpec(
        id=pool.get("id"),  # PoolSpec refuses a non-integer
        fetch_networks=pool.get("fetch_networks", ()),  # type: ignore[arg-type]
        fetch_hosts=pool.get("fetch_hosts", ()),  # type: ignore[arg-type]
        job_networks=pool.get("job_networks", ()),  # type: ignore[arg-type]
    )


def pool_refusal(spec: JobSpec, cache: BlobCache | None, runtime: Any = None) -> str:
    """Why this host refuses a pool job before it starts, or "" (docs/pools.md): its pool
    lists job networks this host does not open (``pool_job_networks`` off, a runtime other
    than Docker, a network that is not private IPv4), or its URL inputs need the pool's fetch
    rules and the host owner does not take them (``pool_fetch`` off). A ``refused`` rejection:
    the server remembers it against the job and offers it to another of the pool's hosts."""
    if spec.pool is None:
        return ""
    settings = getattr(runtime, "settings", None)
    isolation = str(getattr(runtime, "isolation", "none"))
    refusal = job_networks_refusal(spec, settings, isolation)
    if not refusal and cache is not None:
        refusal = cache.pool_refusal(spec.pool, spec.inputs)
    return refusal


def disk_from_offer(disk: DiskLimits | None) -> DiskSpec:
    """The offer's disk limits; an older server sends none: the defaults (DiskSpec)."""
    if disk is None:
        return DiskSpec()
    return DiskSpec(
        work_mb=disk["work_mb"],
        outputs_mb=disk["outputs_mb"],
        tmp_mb=disk["tmp_mb"],
        work_exec=disk["work_exec"],
    )


def input_from_offer(item: InputRef) -> InputSpec:
    """One ``InputRef`` of the offer, checked again here: the agent trusts no path or digest
    just because the server sent it (JobSpec refuses clashes and '..')."""
    if not isinstance(item, dict):
        raise JobSpecError("an input must be an object")
    path, sha256, url = item.get("path"), item.get("sha256"), item.get("url")
    source, size = item.get("source", "store"), item.get("size")
    if not isinstance(path, str) or not isinstance(sha256, str) or not isinstance(url, str):
        raise JobSpecError(f"the input {path!r} needs a path, a sha256 and a url (strings)")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise JobSpecError(f"the input {path!r} has a size that is not a whole number")
    if source not in ("store", "url"):
        raise JobSpecError(f"the input {path!r} has an unknown source {source!r}")
    return InputSpec(path=path, sha256=sha256, source=source, url=url, size=size)


@dataclass(frozen=True)
class CostCap:
    """The local cap of one attempt: the server's own stop rule (``charge_decide``), applied
    by the agent to its own counters so that a disconnected agent can't run unbilled."""

    rates: Rates
    reservation: Reservation
    cap_remaining_micros: int  # the job's cap minus what earlier attempts were charged

    def is_reached(self, cpu_seconds: float, wall_seconds: float) -> bool:
        """True when the next second at full use would pass the cap (the server's ``stop``)."""
        decision = charge_decide(
            counters=counters_from_report(cpu_seconds, wall_seconds),
            rates=self.rates,
            reservation=self.reservation,
            charged_micros=0,
            cap_remaining_micros=self.cap_remaining_micros,
        )
        return decision.stop

    @property
    def seconds_at_full_use(self) -> int:
        """The wall seconds the attempt may run with every reserved core busy."""
        return seconds_until_cap(
            rates=self.rates,
            reservation=self.reservation,
            cap_remaining_micros=self.cap_remaining_micros,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu_core_hour_micros": self.rates.cpu_core_hour_micros,
            "memory_gb_hour_micros": self.rates.memory_gb_hour_micros,
            "gpu_hour_micros": self.rates.gpu_hour_micros,
            "cpus": str(self.reservation.cpus),
            "memory_mb": self.reservation.memory_mb,
            "gpus": self.reservation.gpus,
            "cap_remaining_micros": self.cap_remaining_micros,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CostCap:
        return cls(
            rates=Rates(
                cpu_core_hour_micros=int(data["cpu_core_hour_micros"]),
                memory_gb_hour_micros=int(data["memory_gb_hour_micros"]),
                gpu_hour_micros=int(data["gpu_hour_micros"]),
            ),
            reservation=Reservation(
                cpus=Decimal(str(data["cpus"])),
                memory_mb=int(data["memory_mb"]),
                gpus=int(data["gpus"]),
            ),
            cap_remaining_micros=int(data["cap_remaining_micros"]),
        )


def cap_from_offer(offer: JobOffer) -> CostCap:
    rates, limits = offer["rates"], offer["limits"]
    return CostCap(
        rates=Rates(
            cpu_core_hour_micros=rates["cpu_core_hour_micros"],
            memory_gb_hour_micros=rates["memory_gb_hour_micros"],
            gpu_hour_micros=rates["gpu_hour_micros"],
        ),
        reservation=Reservation(
            cpus=Decimal(str(limits["cpus"])),
            memory_mb=limits["memory_mb"],
            gpus=limits["gpus"],
        ),
        cap_remaining_micros=offer["max_cost_micros"] - offer["charged_micros"],
    )
