"""The agent wire protocol: one typed module shared by the agent and the server.

Every message is a JSON envelope ``{"type": str, "id": str, "data": {...}}``. This module
imports nothing outside the standard library: the agent is installed alone on hosts, and the
server imports these definitions so both sides agree on every field. ``docs/protocol.md``
describes the flow (acknowledgements, resume rules); this file is the field-level truth.

``decode`` validates untrusted input from either side: it checks the envelope, that the type
is known, and that each declared field is present with the declared JSON type and within its
bounds (every int within int64, every float finite; the ``Annotated`` ranges below). It raises
``ProtocolError`` with a stable code on anything else. Each payload type's checker is built once,
on first use, not per message.
"""

import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import (
    Annotated,
    Any,
    Generic,
    Literal,
    NotRequired,
    TypedDict,
    TypeVar,
    get_args,
    get_origin,
    get_type_hints,
)

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024
# A job.log chunk carries at most this many bytes of output (before JSON escaping).
MAX_LOG_CHUNK_BYTES = 64 * 1024

# Websocket close codes (4000-4999 are free for applications).
CLOSE_UNAUTHORIZED = 4401
CLOSE_PROTOCOL_ERROR = 4400
CLOSE_REPLACED = 4409  # another connection of the same host took over


class ProtocolError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Range:
    """Inclusive bounds of a number field (``Annotated[int, Range(0, INT64_MAX)]``)."""

    low: float
    high: float


@dataclass(frozen=True)
class Length:
    """Inclusive bounds of a string's length in characters (``Annotated[str, Length(0, 200)]``)."""

    low: int
    high: int


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Sane maxima (docs/protocol.md, "Bounds"): far above any real host, far below an overflow.
# (The specs in hello have their own, tighter bounds: hosts/specs.py, code invalid_specs.)
MAX_MEMORY_MB = 64 * 1024 * 1024  # 64 TiB, as hosts/specs.py
MAX_SECONDS = 1e9  # ~31 years of (core-, GPU-) seconds per attempt
MAX_LOAD = 1e4  # load as a fraction of all cores

# Ids, attempt numbers, seqs, offsets, sizes: non-negative int64.
Count = Annotated[int, Range(0, INT64_MAX)]
MemoryMb = Annotated[int, Range(0, MAX_MEMORY_MB)]
Seconds = Annotated[float, Range(0, MAX_SECONDS)]
# How many jobs a host runs side by side at most (hello/heartbeat ``slots``).
MAX_SLOTS = 64
Slots = Annotated[int, Range(1, MAX_SLOTS)]
# A sentence for a person (a not-ready reason, a host fault's engine detail).
MAX_REASON_CHARS = 2000
Reason = Annotated[str, Length(0, MAX_REASON_CHARS)]
# The id an agent generates at enrollment; its containers and volumes carry it as a label.
InstallId = Annotated[str, Length(8, 64)]
# A content digest: sha256 as 64 lowercase hex characters (the receiver checks the alphabet).
Sha256 = Annotated[str, Length(64, 64)]
# A path under /inputs (relative, POSIX, no "..": the receiver checks it again).
InputPath = Annotated[str, Length(1, 255)]
MAX_URL_CHARS = 4096

# --- payloads: agent -> server ----------------------------------------------------------------


class GpuSpec(TypedDict):
    model: str
    memory_mb: int


class HostSpecs(TypedDict):
    cpu_model: str
    arch: str
    cpus: int
    memory_mb: int
    disk_free_mb: int
    os: str
    os_version: str
    gpus: list[GpuSpec]
    docker_available: bool
    # The data plane (docs/protocol.md, "Data"). Older agents send neither: no quota, and no
    # per-job disk allowance beyond disk_free_mb.
    # True when /work, /outputs and /tmp of a job are size-limited file systems (ENOSPC at the
    # limit); False when the host can't enforce it (the catalog warns renters).
    disk_quota: NotRequired[bool]
    # The most disk one job may ask for: work_mb + outputs_mb + tmp_mb + its inputs' size.
    job_disk_mb: NotRequired[MemoryMb]


class RunningJobRef(TypedDict):
    job_id: Count
    attempt: Count


class Readiness(TypedDict):
    """What the agent last checked of itself: can it run a job now, and how isolated is it."""

    ready: bool
    reason: Reason  # why not ready, for the host owner; "" when ready
    isolation: Literal["docker", "none"]


class Hello(TypedDict):
    agent_version: str
    protocol_version: int
    specs: HostSpecs
    running_jobs: list[RunningJobRef]
    is_available: bool
    is_draining: bool
    # Older agents send none of these: one slot, ready, isolated as specs.docker_available says.
    install_id: NotRequired[InstallId]
    slots: NotRequired[Slots]
    readiness: NotRequired[Readiness]


class Usage(TypedDict):
    """Cumulative counters for one attempt since it started (never deltas)."""

    job_id: Count
    attempt: Count
    seq: Count
    cpu_seconds: Seconds
    wall_seconds: Seconds
    memory_peak_mb: MemoryMb
    memory_current_mb: MemoryMb
    gpu_seconds: Seconds
    is_final: NotRequired[bool]


class Heartbeat(TypedDict):
    load: Annotated[float, Range(0, MAX_LOAD)]
    is_available: bool
    unavailable_reason: str
    running_jobs: list[RunningJobRef]
    # Drained locally (``communipute-agent drain`` or SIGTERM); the owner's drain is server-side.
    is_draining: NotRequired[bool]
    slots: NotRequired[Slots]
    readiness: NotRequired[Readiness]


class JobAccept(TypedDict):
    job_id: Count
    attempt: Count


class JobReject(TypedDict):
    job_id: Count
    attempt: Count
    reason: str
    # busy: no free slot now (never held against the job); refused: the host's policy or a
    # misfit (remembered: not offered again to this host); host_fault: the host can't run jobs
    # now (not ready). Absent: refused. (What each asks of the server; docs/protocol.md says
    # what this server does with them yet.)
    code: NotRequired[Literal["busy", "refused", "host_fault"]]


class JobStarted(TypedDict):
    job_id: Count
    attempt: Count
    phase: Literal["preparing", "running"]


class JobLog(TypedDict):
    """Output bytes ``[offset, offset + len(data))`` of the attempt's combined log."""

    job_id: Count
    attempt: Count
    offset: Count
    data: str  # UTF-8 text; undecodable bytes replaced by the agent


class OutputFile(TypedDict):
    name: str
    size: Count
    sha256: str
    # Where the agent put the bytes (docs/pools.md, "Outputs leave only when released"):
    # "central" (absent: the same) uploaded to the server with tus; "pool" written to the
    # job's pool store (``PoolRef.output_store``), the server told only name, size and digest.
    location: NotRequired[Literal["central", "pool"]]


class JobFinished(TypedDict):
    job_id: Count
    attempt: Count
    status: Literal["succeeded", "failed", "cancelled", "timed_out", "budget_exhausted"]
    reason: str
    exit_code: int | None
    outputs: list[OutputFile]
    usage: Usage
    # How many bytes of log the attempt produced in all (what job.log chunks will have covered
    # once the agent has sent them): the server's log is complete only when it holds them all.
    log_bytes: NotRequired[Count]
    # For status "failed": whose fault. "host": the host could not prepare, start or supervise
    # the container (image missing, engine error, disk full, its pip index unreachable); the
    # attempt is not charged and the job runs elsewhere (what it asks of the server; see
    # docs/protocol.md). Absent: the renter's (as before).
    fault: NotRequired[Literal["renter", "host"]]
    # A host fault's engine detail, for the host owner's dashboard only (``reason`` is the
    # renter's sentence).
    detail: NotRequired[Reason]


class Ack(TypedDict):
    """Either side acknowledging a message by its envelope id."""

    ack_id: str


# --- payloads: server -> agent ----------------------------------------------------------------


class Welcome(TypedDict):
    host_id: int
    # An agent heartbeats at least this often (an older agent: always this often).
    heartbeat_seconds: int
    # A newer agent heartbeats when its state (availability, drain, slots, readiness, running
    # jobs) changes, and otherwise at least this often: its presence is the open socket
    # (docs/protocol.md, "Presence and availability"). Absent from an older server: the agent
    # keeps to heartbeat_seconds.
    heartbeat_idle_seconds: NotRequired[int]
    usage_report_seconds: int
    keep_jobs: list[RunningJobRef]
    kill_jobs: list[RunningJobRef]


class JobFile(TypedDict):
    path: str
    content_b64: str


class JobLimits(TypedDict):
    cpus: float
    memory_mb: int
    gpus: int
    timeout_seconds: int
    allow_network: bool


class JobRates(TypedDict):
    cpu_core_hour_micros: int
    memory_gb_hour_micros: int
    gpu_hour_micros: int


class InputRef(TypedDict):
    """One blob the job reads: fetched (with resume), checked against ``sha256``, cached by
    digest, and mounted read-only at ``/inputs/<path>``."""

    path: InputPath
    sha256: Sha256
    # Bytes; absent only for a renter URL that stated none (the host's own cap applies).
    size: NotRequired[Count]
    # "store": the platform's blob store; ``url`` is a short-lived signed URL (absolute, or
    # starting with "/" for one relative to the agent's server URL). "url": the renter's own
    # https URL, fetched under the host's fetch policy (no private addresses unless allowed).
    source: Literal["store", "url"]
    url: Annotated[str, Length(1, MAX_URL_CHARS)]


class DiskLimits(TypedDict):
    """What the job may write: each a size-limited file system (ENOSPC past it)."""

    work_mb: MemoryMb
    outputs_mb: MemoryMb
    tmp_mb: MemoryMb
    work_exec: bool  # /work is mounted noexec unless the job asked otherwise


MAX_GROUP_TASKS = 1_000_000


class TaskRef(TypedDict):
    """The job is task ``index`` (from 0) of a group of ``count`` (docs/jobs.md, "Job
    groups"): the agent gives both to the job as ``COMMUNIPUTE_TASK_INDEX`` and
    ``COMMUNIPUTE_TASK_COUNT``. Its argument, if any, is an ordinary input (``task.json``)."""

    index: Annotated[int, Range(0, MAX_GROUP_TASKS - 1)]
    count: Annotated[int, Range(1, MAX_GROUP_TASKS)]


MAX_POOL_RULES = 64
PoolRule = Annotated[str, Length(1, 255)]  # a CIDR network or a host name ("*.example.org")


class PoolStore(TypedDict):
    """An S3-compatible store on the institution's side (docs/pools.md, "Outputs"): the agent
    writes the job's outputs (and, where the pool says so, its log) there with credentials
    the host holds; the server is told names, sizes and digests only."""

    endpoint_url: Annotated[str, Length(1, MAX_URL_CHARS)]
    bucket: Annotated[str, Length(3, 63)]
    prefix: Annotated[str, Length(0, 255)]  # keys are <prefix>jobs/<job>/<attempt>/<name>
    region: Annotated[str, Length(0, 64)]


def pool_object_key(prefix: str, job_id: int, attempt: int, name: str) -> str:
    """The key of an attempt's output ``name`` on a pool's store; ``name`` "" is the attempt's
    log (``<prefix>jobs/<job>/<attempt>/log``). The agent writes there, the server records it."""
    base = f"{prefix}jobs/{job_id}/{attempt}/"
    return f"{base}outputs/{name}" if name else f"{base}log"


class PoolRef(TypedDict):
    """The private pool a job runs in (docs/pools.md); only the pool's hosts are offered it.

    ``fetch_networks`` / ``fetch_hosts``: where the job's URL inputs may be fetched besides
    public https (http too inside them); added to the host's own fetch policy for this job
    only. ``job_networks``: internal networks the run step may reach (nothing else; empty:
    no network). ``output_store``: absent, outputs go to the central store as for any job.
    ``logs``: "central" as any job, "store" kept on the pool's store, "redacted" not kept;
    for both the server gets sizes only. ``airlock``: outputs reach the renter only after a
    steward approved them (the agent keeps them on the pool's store until released)."""

    id: int
    fetch_networks: Annotated[list[PoolRule], Length(0, MAX_POOL_RULES)]
    fetch_hosts: Annotated[list[PoolRule], Length(0, MAX_POOL_RULES)]
    job_networks: Annotated[list[PoolRule], Length(0, MAX_POOL_RULES)]
    output_store: NotRequired[PoolStore]
    logs: Literal["central", "store", "redacted"]
    airlock: bool


class JobOffer(TypedDict):
    job_id: int
    attempt: int
    offer_expires_at: str  # ISO 8601 UTC
    entrypoint: str
    files: list[JobFile]
    requirements: list[str]
    limits: JobLimits
    rates: JobRates
    max_cost_micros: int
    charged_micros: int  # already charged to earlier attempts' escrow; the local cap uses it
    # The data plane (docs/protocol.md, "Data"); absent from older servers: no inputs, the
    # agent's default disk limits.
    inputs: NotRequired[list[InputRef]]
    # A zip of the job's code too large to travel inline: unpacked into /work (path "code.zip",
    # never mounted) before ``files``, which win on a clash.
    code_archive: NotRequired[InputRef]
    disk: NotRequired[DiskLimits]
    # A task of a job group; absent for a job of its own (and ignored by older agents).
    task: NotRequired[TaskRef]
    # The private pool the job runs in; absent for a public job (and ignored by older agents).
    pool: NotRequired[PoolRef]


class OutputRelease(TypedDict):
    """A steward (or the pool's policy) released an output kept on the pool's store
    (docs/pools.md): read ``key`` from ``store`` with the host's own credentials for pool
    ``pool_id``, check that the bytes are ``size`` long with digest ``sha256``, and upload them
    to the server with tus (``/api/v1/agent/uploads/``, ``Upload-Metadata: release <id>, sha256``).
    The server checks the digest again at the upload's completion; nothing is acknowledged
    (a release that did not go through is sent again, maybe to another host of the pool)."""

    release_id: Count  # the output's id on the server
    job_id: Count
    attempt: Count
    name: Annotated[str, Length(1, 255)]
    size: Count
    sha256: Sha256
    pool_id: Count
    store: PoolStore
    key: Annotated[str, Length(1, 1024)]


# A job.cancel whose reason starts with this names an attempt the server no longer runs on
# this host (lost, superseded, unknown): the agent removes it and reports nothing more.
STALE_ATTEMPT_REASON_PREFIX = "stale attempt"


class JobCancel(TypedDict):
    job_id: int
    attempt: int
    reason: str


class LogAck(TypedDict):
    job_id: int
    attempt: int
    offset: int  # the server holds every byte before this offset


class UsageAck(TypedDict):
    job_id: int
    attempt: int
    seq: int
    stop: bool  # the cap is reached: stop the job with budget_exhausted


class Drain(TypedDict):
    is_draining: bool


class TimeWindow(TypedDict):
    """Weekly window: ``days`` are ISO weekdays 0 (Monday) .. 6; ``end`` <= ``start`` crosses
    midnight into the next day; ``end`` may be "24:00"."""

    days: list[int]
    start: str  # "HH:MM"
    end: str  # "HH:MM"


class AvailabilityPolicy(TypedDict):
    """The owner's availability policy, evaluated by the agent in the host's time zone."""

    timezone: str  # IANA name, e.g. "Europe/Berlin"
    windows: list[TimeWindow]  # empty = any time
    idle_minutes: int | None  # minutes without keyboard/mouse input before taking work
    max_load: float | None  # percent of all cores other processes may use (BOINC's rule)


class Error(TypedDict):
    code: str
    message: str
    ref_id: NotRequired[str]


AGENT_MESSAGES: dict[str, type] = {
    "hello": Hello,
    "heartbeat": Heartbeat,
    "job.accept": JobAccept,
    "job.reject": JobReject,
    "job.started": JobStarted,
    "job.log": JobLog,
    "job.usage": Usage,
    "job.finished": JobFinished,
    "ack": Ack,
}

SERVER_MESSAGES: dict[str, type] = {
    "welcome": Welcome,
    "job.offer": JobOffer,
    "job.cancel": JobCancel,
    "log.ack": LogAck,
    "usage.ack": UsageAck,
    "drain": Drain,
    "policy": AvailabilityPolicy,
    "output.release": OutputRelease,
    "error": Error,
    "ack": Ack,
}


D = TypeVar("D")


class Envelope(TypedDict, Generic[D]):
    """A decoded message; ``data`` is the payload type its ``type`` names (``decode`` checked
    it), so a handler of ``job.usage`` takes an ``Envelope[Usage]`` and reads it typed."""

    type: str
    id: str
    data: D


def new_id() -> str:
    return uuid.uuid4().hex


def encode(message_type: str, data: Any, message_id: str | None = None) -> str:
    envelope = {"type": message_type, "id": message_id or new_id(), "data": data}
    return json.dumps(envelope, separators=(",", ":"))


def decode(raw: str | bytes, allowed: dict[str, type]) -> Envelope[Any]:
    """Parse and validate one envelope whose type is in ``allowed``."""
    if _size_in_bytes(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"message exceeds {MAX_MESSAGE_BYTES} bytes")
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("bad_json", "message is not valid JSON") from None
    if not isinstance(envelope, dict):
        raise ProtocolError("bad_envelope", "message must be a JSON object")
    message_type, message_id, data = envelope.get("type"), envelope.get("id"), envelope.get("data")
    if not isinstance(message_type, str) or message_type not in allowed:
        raise ProtocolError("unknown_type", f"unknown message type {message_type!r}")
    if not isinstance(message_id, str) or not 0 < len(message_id) <= 64:
        raise ProtocolError("bad_envelope", "id must be a non-empty string of at most 64 chars")
    if not isinstance(data, dict):
        raise ProtocolError("bad_envelope", "data must be a JSON object")
    _checker(allowed[message_type])(data, "data")
    return Envelope(type=message_type, id=message_id, data=data)


def payload_check(expected: type, value: Any, where: str = "data") -> None:
    """Validate one payload (e.g. ``HostSpecs`` posted at enrollment) like ``decode`` does."""
    _checker(expected)(value, where)


def _size_in_bytes(raw: str | bytes) -> int:
    # A str of more characters than the limit is too large without encoding it.
    if isinstance(raw, bytes) or len(raw) > MAX_MESSAGE_BYTES:
        return len(raw)
    return len(raw.encode("utf-8", "surrogatepass"))


Checker = Callable[[Any, str], None]
_checkers: dict[Any, Checker] = {}


def _checker(expected: Any) -> Checker:
    """The checker of one declared type, built on first use and kept."""
    checker = _checkers.get(expected)
    if checker is None:
        checker = _checkers[expected] = _compile(expected)
    return checker


def _compile(expected: Any) -> Checker:
    origin = get_origin(expected)
    if origin is NotRequired:
        return _checker(get_args(expected)[0])
    if origin is Annotated:
        base, bounds = get_args(expected)[0], get_args(expected)[1]
        if isinstance(bounds, Length):
            return _lengthed(_checker(base), bounds)
        return _ranged(_checker(base), bounds)
    if origin is Literal:
        return _literal(get_args(expected))
    if origin is list:
        return _list(_checker(get_args(expected)[0]))
    if origin is dict:
        return _typed(dict, "an object")
    if _is_union(expected):
        return _union([_checker(option) for option in get_args(expected)])
    if _is_typeddict(expected):
        return _typeddict(expected)
    if expected is type(None):
        return _none
    if expected is float:
        return _float
    if expected is int:
        return _int
    if expected is bool:
        return _typed(bool, "bool")
    if expected is str:
        return _typed(str, "str")
    if expected is Any:
        return _anything
    raise TypeError(f"the protocol has no checker for {expected!r}")


def _ranged(base: Checker, bounds: Range) -> Checker:
    def check(value: Any, where: str) -> None:
        base(value, where)
        if not bounds.low <= value <= bounds.high:
            raise ProtocolError(
                "bad_field", f"{where} must be between {bounds.low:g} and {bounds.high:g}"
            )

    return check


def _lengthed(base: Checker, bounds: Length) -> Checker:
    def check(value: Any, where: str) -> None:
        base(value, where)
        if not bounds.low <= len(value) <= bounds.high:
            raise ProtocolError(
                "bad_field", f"{where} must be {bounds.low} to {bounds.high} characters long"
            )

    return check


def _literal(options: tuple[Any, ...]) -> Checker:
    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or value not in options:
            raise ProtocolError("bad_field", f"{where} must be one of {options}")

    return check


def _list(item: Checker) -> Checker:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise ProtocolError("bad_field", f"{where} must be a list")
        for index, element in enumerate(value):
            item(element, f"{where}[{index}]")

    return check


def _typed(kind: type, name: str) -> Checker:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, kind):
            raise ProtocolError("bad_field", f"{where} must be {name}")

    return check


def _union(options: list[Checker]) -> Checker:
    def check(value: Any, where: str) -> None:
        for option in options:
            try:
                option(value, where)
            except ProtocolError:
                continue
            return
        raise ProtocolError("bad_field", f"{where} has the wrong type")

    return check


def _typeddict(expected: Any) -> Checker:
    fields = {
        name: _checker(hint) for name, hint in get_type_hints(expected, include_extras=True).items()
    }
    required = tuple(expected.__required_keys__)

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise ProtocolError("bad_field", f"{where} must be an object")
        for name in required:
            if name not in value:
                raise ProtocolError("missing_field", f"{where}.{name} is required")
        for name, item in value.items():
            field = fields.get(name)
            if field is not None:
                field(item, f"{where}.{name}")

    return check


def _none(value: Any, where: str) -> None:
    if value is not None:
        raise ProtocolError("bad_field", f"{where} must be null")


def _int(value: Any, where: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError("bad_field", f"{where} must be int")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ProtocolError("bad_field", f"{where} must fit in 64 bits")


def _float(value: Any, where: str) -> None:
    # JSON has one number type: an int is a fine float. NaN and Infinity (which Python's json
    # reads) are not numbers a host can report.
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ProtocolError("bad_field", f"{where} must be float")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError("bad_field", f"{where} must be finite")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise ProtocolError("bad_field", f"{where} must fit in 64 bits")


def _anything(value: Any, where: str) -> None:
    return None


def _is_typeddict(candidate: Any) -> bool:
    return isinstance(candidate, type) and hasattr(candidate, "__required_keys__")


def _is_union(expected: Any) -> bool:
    return (
        type(expected).__name__ in {"UnionType", "_UnionGenericAlias"}
        or str(get_origin(expected)) == "typing.Union"
    )
