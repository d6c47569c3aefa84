"""The shapes the API returns, as typed, frozen dataclasses (docs/api.md has every field).

Each keeps the server's JSON in ``raw`` (what ``--json`` prints), so a field the server adds
later is there before this package names it. Money is ``int`` micro-credits (``*_micros``);
exact decimals (a receipt's quantities) are ``Decimal``; times are aware ``datetime`` in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

# A job in one of these never changes again.
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "timed_out", "budget_exhausted"})


def timestamp(value: Any) -> datetime | None:
    """An ISO 8601 time from the API (``...Z`` included, which 3.10 can't parse alone)."""
    if not value:
        return None
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _int(value: Any, default: int = 0) -> int:
    return default if value is None else int(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class Disk:
    """The sizes of a job's writable file systems in MB (docs/jobs.md, "Disk"); ``None``: the
    server's default (``/work`` 1024, ``/outputs`` 1024, ``/tmp`` 256)."""

    work_mb: int | None = None
    outputs_mb: int | None = None
    tmp_mb: int | None = None

    def to_api(self) -> dict[str, int]:
        given = {"work_mb": self.work_mb, "outputs_mb": self.outputs_mb, "tmp_mb": self.tmp_mb}
        return {name: value for name, value in given.items() if value is not None}


@dataclass(frozen=True)
class JobInput:
    """A file the job reads at ``/inputs/<path>``."""

    path: str
    sha256: str
    size: int
    source: str  # "store" (a blob you hold) or "url"
    url: str = ""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> JobInput:
        return cls(
            path=str(data["path"]),
            sha256=str(data["sha256"]),
            size=_int(data.get("size")),
            source=str(data.get("source", "store")),
            url=str(data.get("url") or ""),
        )


@dataclass(frozen=True)
class JobInfo:
    """One job as the server last described it (``GET /api/v1/jobs/{id}/``)."""

    id: int
    status: str
    status_reason: str
    name: str
    entrypoint: str
    attempt: int
    host: int | None
    exit_code: int | None
    cost_micros: int
    max_cost_micros: int
    cpus: Decimal
    memory_mb: int
    gpus: int
    timeout_seconds: int
    queue_position: int | None
    waiting_reason: str
    cancel_requested: bool
    inputs: tuple[JobInput, ...]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> JobInfo:
        return cls(
            id=int(data["id"]),
            status=str(data["status"]),
            status_reason=str(data.get("status_reason") or ""),
            name=str(data.get("name") or ""),
            entrypoint=str(data.get("entrypoint") or ""),
            attempt=_int(data.get("attempt")),
            host=_optional_int(data.get("host")),
            exit_code=_optional_int(data.get("exit_code")),
            cost_micros=_int(data.get("cost_micros")),
            max_cost_micros=_int(data.get("max_cost_micros")),
            cpus=Decimal(str(data.get("cpus", 0))),
            memory_mb=_int(data.get("memory_mb")),
            gpus=_int(data.get("gpus")),
            timeout_seconds=_int(data.get("timeout_seconds")),
            queue_position=_optional_int(data.get("queue_position")),
            waiting_reason=str(data.get("waiting_reason") or ""),
            cancel_requested=bool(data.get("cancel_requested")),
            inputs=tuple(JobInput.from_api(item) for item in data.get("inputs") or ()),
            created_at=timestamp(data.get("created_at")),
            started_at=timestamp(data.get("started_at")),
            finished_at=timestamp(data.get("finished_at")),
            raw=data,
        )


@dataclass(frozen=True)
class LogPage:
    """One read of a job's log (``GET /api/v1/jobs/{id}/logs/?offset=``)."""

    job_id: int
    attempt: int | None
    offset: int
    next_offset: int
    data: str
    truncated: bool
    is_complete: bool
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> LogPage:
        return cls(
            job_id=int(data["job_id"]),
            attempt=_optional_int(data.get("attempt")),
            offset=_int(data.get("offset")),
            next_offset=_int(data.get("next_offset")),
            data=str(data.get("data") or ""),
            truncated=bool(data.get("truncated")),
            is_complete=bool(data.get("is_complete")),
            raw=data,
        )


@dataclass(frozen=True)
class Output:
    """A file the job left in ``/outputs``."""

    name: str
    size: int
    sha256: str
    attempt: int
    uploaded_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Output:
        return cls(
            name=str(data["name"]),
            size=_int(data.get("size")),
            sha256=str(data.get("sha256") or ""),
            attempt=_int(data.get("attempt")),
            uploaded_at=timestamp(data.get("uploaded_at")),
            raw=data,
        )


@dataclass(frozen=True)
class UsageLine:
    resource: str  # cpu, memory, gpu
    quantity: Decimal
    unit: str  # core-second, GB-second, GPU-second
    rate_micros_per_hour: int

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> UsageLine:
        return cls(
            resource=str(data["resource"]),
            quantity=Decimal(str(data["quantity"])),
            unit=str(data["unit"]),
            rate_micros_per_hour=_int(data.get("rate_micros_per_hour")),
        )


@dataclass(frozen=True)
class AttemptReceipt:
    """What one attempt that ran was charged (docs/metering.md)."""

    attempt: int
    host_id: int
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    wall_seconds: Decimal
    memory_peak_mb: int
    usage: tuple[UsageLine, ...]
    usage_cost_micros: int
    gross_micros: int
    fee_micros: int
    host_net_micros: int
    reversed_micros: int
    reversed_fee_micros: int
    charged_micros: int

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> AttemptReceipt:
        return cls(
            attempt=int(data["attempt"]),
            host_id=int(data["host_id"]),
            status=str(data["status"]),
            started_at=timestamp(data.get("started_at")),
            finished_at=timestamp(data.get("finished_at")),
            wall_seconds=Decimal(str(data.get("wall_seconds") or 0)),
            memory_peak_mb=_int(data.get("memory_peak_mb")),
            usage=tuple(UsageLine.from_api(line) for line in data.get("usage") or ()),
            usage_cost_micros=_int(data.get("usage_cost_micros")),
            gross_micros=_int(data.get("gross_micros")),
            fee_micros=_int(data.get("fee_micros")),
            host_net_micros=_int(data.get("host_net_micros")),
            reversed_micros=_int(data.get("reversed_micros")),
            reversed_fee_micros=_int(data.get("reversed_fee_micros")),
            charged_micros=_int(data.get("charged_micros")),
        )


@dataclass(frozen=True)
class ReceiptTotals:
    gross_micros: int
    fee_micros: int
    host_net_micros: int
    reversed_micros: int
    charged_micros: int

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ReceiptTotals:
        return cls(
            gross_micros=_int(data.get("gross_micros")),
            fee_micros=_int(data.get("fee_micros")),
            host_net_micros=_int(data.get("host_net_micros")),
            reversed_micros=_int(data.get("reversed_micros")),
            charged_micros=_int(data.get("charged_micros")),
        )


@dataclass(frozen=True)
class Receipt:
    """What a job cost: per attempt, the totals, the hold and what went back."""

    job_id: int
    job_name: str
    status: str
    is_settled: bool
    max_cost_micros: int
    attempts: tuple[AttemptReceipt, ...]
    totals: ReceiptTotals
    hold_micros: int
    refund_micros: int
    held_micros: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def charged_micros(self) -> int:
        """What you pay for the job (gross less reversals)."""
        return self.totals.charged_micros

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Receipt:
        return cls(
            job_id=int(data["job_id"]),
            job_name=str(data.get("job_name") or ""),
            status=str(data["status"]),
            is_settled=bool(data.get("is_settled")),
            max_cost_micros=_int(data.get("max_cost_micros")),
            attempts=tuple(AttemptReceipt.from_api(a) for a in data.get("attempts") or ()),
            totals=ReceiptTotals.from_api(data.get("totals") or {}),
            hold_micros=_int(data.get("hold_micros")),
            refund_micros=_int(data.get("refund_micros")),
            held_micros=_int(data.get("held_micros")),
            raw=data,
        )


@dataclass(frozen=True)
class Wallet:
    """``available`` is yours to spend; ``held`` sits in your running jobs' holds."""

    balance_micros: int
    held_micros: int
    available_micros: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Wallet:
        return cls(
            balance_micros=_int(data.get("balance_micros")),
            held_micros=_int(data.get("held_micros")),
            available_micros=_int(data.get("available_micros")),
            raw=data,
        )
