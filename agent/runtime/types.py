"""The runtime's vocabulary: what a job asks for, what the runtime hands back, and the
``Runtime`` interface that the Docker and the process runtimes both implement.

Nothing here talks to Docker or the operating system; ``JobSpec`` validates itself on
construction so that a bad offer is refused before anything touches the disk.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal, NamedTuple, Protocol

from agent.protocol import MAX_LOG_CHUNK_BYTES, MAX_URL_CHARS

# Production default (DESIGN.md); `make runner-image` builds communipute/runner:latest where no
# registry is reachable, and the agent's configuration picks which one a host uses.
DEFAULT_IMAGE = "python:3.12-slim"

Status = Literal["succeeded", "failed", "cancelled", "timed_out", "budget_exhausted"]
StopStatus = Literal["cancelled", "budget_exhausted"]
# Whose fault a failed attempt is: the renter's (the script, its memory, its requirements) or
# the host's (its engine, image, disk or package index: the job runs elsewhere, uncharged).
Fault = Literal["renter", "host"]
Isolation = Literal["docker", "none"]
# Where an input's bytes come from: the platform's blob store, or the renter's own https URL.
InputSource = Literal["store", "url"]
# Whether /work and /outputs are size-limited file systems (agent/runtime/quota.py): "auto"
# where the host can (root, loop devices, mkfs.ext4), "on" or not ready, "off" never.
DiskQuotaMode = Literal["auto", "on", "off"]
# A host fault's engine detail is cut to this many characters (agent/protocol.py Reason).
MAX_DETAIL_CHARS = 2000

MAX_FILES = 1000
MAX_PATH_CHARS = 255
MAX_REQUIREMENTS = 100
MAX_REQUIREMENT_CHARS = 200
MAX_INPUTS = 1000  # the server's JOB_INPUTS_MAX_COUNT
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A job's disk limits (DiskSpec) when the offer states none (an older server): the server's
# JOB_WORK_MB, JOB_OUTPUTS_MB and JOB_TMP_MB defaults.
DEFAULT_WORK_MB = 1024
DEFAULT_OUTPUTS_MB = 1024
DEFAULT_TMP_MB = 256
MAX_DISK_MB = 16 * 1024 * 1024  # the protocol's MemoryMb bound

# A package specifier and nothing else: a name, optional extras and optional version clauses.
# No URLs, paths, `name @ url`, environment markers or options (`-e`, `--index-url`): a
# requirement line must never be able to point pip somewhere the host did not choose.
_VERSION_CLAUSE = r"(?:===|==|!=|<=|>=|~=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_REQUIREMENT = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
    r"(?:\[[A-Za-z0-9._-]+(?:\s*,\s*[A-Za-z0-9._-]+)*\])?"
    rf"(?:\s*{_VERSION_CLAUSE}(?:\s*,\s*{_VERSION_CLAUSE})*)?"
)


class JobSpecError(ValueError):
    """The offer asks for something the runtime refuses to run; the message says what."""


@dataclass(frozen=True)
class RuntimeSettings:
    """How this host runs jobs. The agent's configuration builds one of these."""

    work_root: Path
    image: str = DEFAULT_IMAGE
    # Marks the containers of this agent (label communipute.agent) so a restarted agent finds
    # its own and leaves other agents' containers on the same engine alone.
    agent_marker: str = field(default_factory=socket.gethostname)
    # This installation (generated at enrollment) and the server it works for (a digest of the
    # URL): with the marker they make a container this agent's. Two agents with the same host
    # id (two servers, or a test beside the demo) on one engine never touch each other's.
    install_id: str = ""
    server_id: str = ""
    pip_index_url: str | None = None
    pip_extra_index_url: str | None = None
    # The host's CA bundle (a file on the host), mounted read-only into the install container
    # with PIP_CERT pointing at it: hosts behind a TLS-intercepting proxy need it.
    pip_cert_path: Path | None = None
    # The host owner's policy: a job gets network in its run step only if this is true AND the
    # job asked for it. The install step always has network; nothing else does.
    network_allowed: bool = False
    # The host owner's word on private pools' job networks (docs/pools.md "The run step's
    # network"): true, a pool job's run step may join a network that reaches only the CIDRs
    # its pool lists (agent/runtime/pool_network.py); false, such a job is refused.
    pool_job_networks: bool = False
    run_network: str = "bridge"
    install_network: str = "bridge"
    outputs_max_bytes: int = 100 * 1024 * 1024
    outputs_max_files: int = 1000
    log_chunk_bytes: int = MAX_LOG_CHUNK_BYTES
    # Docker keeps at most this much log per container (json-file rotation); the server keeps
    # its own capped copy, so this only bounds the host's disk.
    log_max_bytes: int = 64 * 1024 * 1024
    pids_limit: int = 256
    nofile_limit: int = 4096
    # RLIMIT_NPROC counts every process of the uid on the whole host, so it is only a backstop;
    # the pids cgroup (pids_limit) is the per-job limit.
    nproc_limit: int = 4096
    run_user: str = "65534:65534"
    # Wheels only: installing a wheel runs none of the package's code, so no renter-chosen code
    # ever runs while the sandbox has network (an sdist's setup.py would, in the install step).
    install_only_wheels: bool = True
    install_timeout_seconds: int = 900
    install_memory_mb: int = 2048
    install_cpus: float = 2.0
    # /work and /outputs as loop-mounted ext4 images of the job's sizes (agent/runtime/quota.py).
    disk_quotas: DiskQuotaMode = "auto"
    # Warm environments: a shared volume of wheels that pip downloads (``pip download``, which
    # runs no package code) and installs from, read-only; "" turns it off.
    wheelhouse_volume: str = "communipute-wheelhouse"
    # Cached environment volumes are pruned, least recently used first, down to this size.
    env_cache_max_mb: int = 10 * 1024

    def __post_init__(self) -> None:
        if self.log_chunk_bytes < 1 or self.log_chunk_bytes > MAX_LOG_CHUNK_BYTES:
            raise ValueError(f"log_chunk_bytes must be within 1..{MAX_LOG_CHUNK_BYTES}")
        if self.outputs_max_bytes < 0 or self.outputs_max_files < 0:
            raise ValueError("output limits must not be negative")
        if self.disk_quotas not in ("auto", "on", "off"):
            raise ValueError(f"disk_quotas must be auto, on or off, not {self.disk_quotas!r}")
        if self.env_cache_max_mb < 0:
            raise ValueError("env_cache_max_mb must not be negative")
        if not re.fullmatch(r"\d+:\d+", self.run_user) or self.run_user.startswith("0:"):
            raise ValueError("run_user must be a numeric non-root uid:gid")


@dataclass(frozen=True)
class InputSpec:
    """One blob the job reads at ``/inputs/<path>`` (or, as the code archive, unpacked into
    ``/work``): fetched from ``url``, checked against ``sha256`` before it is used."""

    path: str
    sha256: str
    source: InputSource
    url: str
    size: int | None = None  # None only for a renter URL that stated none (fetch_max_mb caps it)

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise JobSpecError(f"the input {self.path!r} has a sha256 that is not 64 hex digits")
        if self.source not in ("store", "url"):
            raise JobSpecError(f"the input {self.path!r} has an unknown source {self.source!r}")
        if not self.url or len(self.url) > MAX_URL_CHARS:
            raise JobSpecError(
                f"the input {self.path!r} needs a URL of 1 to {MAX_URL_CHARS} characters"
            )
        if self.size is not None and self.size < 0:
            raise JobSpecError(f"the input {self.path!r} has a negative size")


@dataclass(frozen=True)
class DiskSpec:
    """What a job may write, in MB: /work and /outputs (size-limited file systems where the
    host has disk quotas) and /tmp (a tmpfs: memory, counted in the job's memory limit)."""

    work_mb: int = DEFAULT_WORK_MB
    outputs_mb: int = DEFAULT_OUTPUTS_MB
    tmp_mb: int = DEFAULT_TMP_MB
    work_exec: bool = False  # /work is mounted noexec unless the job asked otherwise

    def __post_init__(self) -> None:
        for name in ("work_mb", "outputs_mb", "tmp_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise JobSpecError(f"disk.{name} must be a whole number of MB, not {value!r}")
            if not 1 <= value <= MAX_DISK_MB:
                raise JobSpecError(f"disk.{name} must be within 1..{MAX_DISK_MB}, not {value}")
        if not isinstance(self.work_exec, bool):
            raise JobSpecError(f"disk.work_exec must be true or false, not {self.work_exec!r}")

    @property
    def host_disk_mb(self) -> int:
        """The host disk the job may fill: /work and /outputs (/tmp is memory)."""
        return self.work_mb + self.outputs_mb


_POOL_HOST = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
MAX_POOL_RULES = 64  # agent/protocol.py MAX_POOL_RULES


@dataclass(frozen=True)
class PoolSpec:
    """The private pool a job runs in (the offer's ``pool``, docs/pools.md): where its URL
    inputs may be fetched besides public https, and the networks its run step may reach.
    Whether this host takes those rules is the host owner's (agent settings ``pool_fetch``;
    job networks are refused: docs/pools.md "The run step's network")."""

    id: int
    fetch_networks: tuple[str, ...] = ()
    fetch_hosts: tuple[str, ...] = ()
    job_networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int) or self.id < 1:
            raise JobSpecError(f"pool.id must be a positive whole number, not {self.id!r}")
        for name in ("fetch_networks", "fetch_hosts", "job_networks"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or len(values) > MAX_POOL_RULES:
                raise JobSpecError(f"pool.{name} must be a list of at most {MAX_POOL_RULES}")
            if not all(isinstance(value, str) for value in values):
                raise JobSpecError(f"pool.{name} must hold strings")
            object.__setattr__(self, name, tuple(values))
        for value in (*self.fetch_networks, *self.job_networks):
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise JobSpecError(f"the pool's {value!r} is not a CIDR network") from None
        hosts = tuple(value.strip().lower().rstrip(".") for value in self.fetch_hosts)
        for host in hosts:
            if not _POOL_HOST.fullmatch(host):
                raise JobSpecError(f"the pool's {host!r} is not a host name (or *.domain)")
        object.__setattr__(self, "fetch_hosts", hosts)


@dataclass(frozen=True)
class JobSpec:
    """One attempt of a job, as the runtime needs it. Validates itself; raises JobSpecError."""

    job_id: int
    attempt: int
    files: Mapping[str, bytes]
    entrypoint: str
    requirements: tuple[str, ...] = ()
    cpus: float = 1.0
    memory_mb: int = 512
    gpus: int = 0
    timeout_seconds: int = 3600
    network_allowed: bool = False
    # The data plane (docs/protocol.md "Data"): blobs linked read-only under /inputs, and a zip
    # of the code unpacked into work/ before ``files`` (which win on a clash).
    inputs: tuple[InputSpec, ...] = ()
    code_archive: InputSpec | None = None
    disk: DiskSpec = field(default_factory=DiskSpec)
    # A task of a job group: its index (from 0) and the group's count, given to the job as
    # COMMUNIPUTE_TASK_INDEX and COMMUNIPUTE_TASK_COUNT (None: a job of its own).
    task_index: int | None = None
    task_count: int | None = None
    # The private pool the job runs in (None: a public job).
    pool: PoolSpec | None = None

    def __post_init__(self) -> None:
        # Accept any sequence of requirements but keep an immutable tuple.
        object.__setattr__(self, "requirements", tuple(self.requirements))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.job_id < 1 or self.attempt < 1:
            raise JobSpecError("job_id and attempt must be positive")
        if not 0 < self.cpus <= 1024:
            raise JobSpecError(f"cpus must be within (0, 1024], not {self.cpus}")
        if not 16 <= self.memory_mb <= 16 * 1024 * 1024:
            raise JobSpecError(f"memory_mb must be at least 16, not {self.memory_mb}")
        if not 0 <= self.gpus <= 64:
            raise JobSpecError(f"gpus must be within 0..64, not {self.gpus}")
        if self.timeout_seconds < 1:
            raise JobSpecError(f"timeout_seconds must be positive, not {self.timeout_seconds}")
        if (self.task_index is None) != (self.task_count is None) or (
            self.task_count is not None
            and self.task_index is not None
            and not 0 <= self.task_index < self.task_count
        ):
            raise JobSpecError(f"task {self.task_index} of {self.task_count} is not a task")
        # With a code archive the entrypoint may be one of its members: the archive is checked
        # for it once unpacked (agent/runtime/inputs.py), before anything runs.
        files_validate(self.files, allow_empty=self.code_archive is not None)
        if self.code_archive is None and self.entrypoint not in self.files:
            raise JobSpecError(f"the entrypoint {self.entrypoint!r} is not one of the files")
        path_validate(self.entrypoint)
        requirements_validate(self.requirements)
        inputs_validate(self.inputs)

    def task_environment(self) -> dict[str, str]:
        """A group task's index and count (docs/jobs.md, "Job groups"); nothing for a job of
        its own."""
        if self.task_index is None or self.task_count is None:
            return {}
        return {
            "COMMUNIPUTE_TASK_INDEX": str(self.task_index),
            "COMMUNIPUTE_TASK_COUNT": str(self.task_count),
        }


def path_validate(path: str) -> None:
    """Refuse a job file name that could land outside the job's work dir or confuse tools."""
    if not path or len(path) > MAX_PATH_CHARS:
        raise JobSpecError(f"file name {path!r} must have 1 to {MAX_PATH_CHARS} characters")
    if "\x00" in path or "\\" in path:
        raise JobSpecError(f"file name {path!r} contains a NUL or a backslash")
    if path.startswith("/"):
        raise JobSpecError(f"file name {path!r} is absolute")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise JobSpecError(f"file name {path!r} has an empty, '.' or '..' component")


def files_validate(files: Mapping[str, bytes], *, allow_empty: bool = False) -> None:
    if not files and not allow_empty:
        raise JobSpecError("a job needs at least one file")
    if len(files) > MAX_FILES:
        raise JobSpecError(f"a job has at most {MAX_FILES} files, not {len(files)}")
    for path, content in files.items():
        path_validate(path)
        if not isinstance(content, bytes):
            raise JobSpecError(f"the content of {path!r} is not bytes")
    # "a" and "a/b" cannot both exist: one would have to be a file and a directory.
    names = set(files)
    for path in files:
        for parent in PurePosixPath(path).parents:
            if str(parent) in names:
                raise JobSpecError(f"{str(parent)!r} is both a file and a directory")


def paths_clash(paths: list[str]) -> str | None:
    """A path that is also the directory of another ("a" and "a/b"), or None."""
    names = set(paths)
    for path in paths:
        for parent in PurePosixPath(path).parents:
            if str(parent) in names:
                return str(parent)
    return None


def inputs_validate(inputs: tuple[InputSpec, ...]) -> None:
    """Input paths as strict as file names (relative, no '..'), unique, none the directory of
    another: each becomes ``<attempt_dir>/inputs/<path>``."""
    if len(inputs) > MAX_INPUTS:
        raise JobSpecError(f"a job has at most {MAX_INPUTS} inputs, not {len(inputs)}")
    seen: set[str] = set()
    for item in inputs:
        path_validate(item.path)
        if item.path in seen:
            raise JobSpecError(f"the input {item.path!r} appears twice")
        seen.add(item.path)
    clash = paths_clash([item.path for item in inputs])
    if clash is not None:
        raise JobSpecError(f"the input {clash!r} is both a file and a directory")


def requirement_validate(line: str) -> None:
    if len(line) > MAX_REQUIREMENT_CHARS or not _REQUIREMENT.fullmatch(line.strip()):
        raise JobSpecError(f"requirement {line!r} is not a plain package specifier")


def requirements_validate(requirements: tuple[str, ...]) -> None:
    if len(requirements) > MAX_REQUIREMENTS:
        raise JobSpecError(f"a job has at most {MAX_REQUIREMENTS} requirements")
    for line in requirements:
        requirement_validate(line)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. ``status`` is the job status the agent reports; ``reason`` is a
    sentence for the renter. A host fault (``fault="host"``) carries the engine's own words in
    ``detail``, for the host owner only."""

    status: Status
    reason: str
    exit_code: int | None = None
    fault: Fault = "renter"
    detail: str = ""


def host_fault(reason: str, detail: object = "") -> Outcome:
    """A failure that is the host's, not the renter's: ``reason`` a plain sentence, the
    engine's text (an exception, pip's output) in ``detail``."""
    text = str(detail).strip() or reason
    if len(text) > MAX_DETAIL_CHARS:
        text = "…" + text[-(MAX_DETAIL_CHARS - 1) :]
    return Outcome("failed", reason, None, fault="host", detail=text)


@dataclass(frozen=True)
class Prepared:
    """The result of the install step. When ``failure`` is set the job must not start."""

    spec: JobSpec
    attempt_dir: Path
    env_ref: str | None  # a volume name (Docker), a venv path (process) or None: no packages
    install_log: bytes = b""
    failure: Outcome | None = None
    env_cached: bool = False


@dataclass(frozen=True)
class UsageSample:
    """Counters of one attempt since it started (cumulative, never deltas)."""

    cpu_seconds: float
    memory_current_mb: int
    memory_peak_mb: int
    # Once the run has ended: how long it ran by the runtime's own record (Docker: the
    # engine's FinishedAt - StartedAt), so an attempt the agent finds again after it exited is
    # not reported as running until then. None while it runs (or where unknown).
    wall_seconds: float | None = None


@dataclass
class Handle:
    """A started attempt. The runtime that made it keeps it up to date; callers read it."""

    job_id: int
    attempt: int
    ref: str  # the container id (Docker) or the process id (process runtime)
    attempt_dir: Path
    timeout_seconds: int
    memory_mb: int
    deadline: float  # time.monotonic() at which the wall-clock timeout fires
    stop_status: StopStatus | None = None
    stop_reason: str = ""
    pid: int = 0  # the sandbox's first process as the host sees it; 0 when unknown
    peak_memory_bytes: int = 0
    last_usage: UsageSample = field(default_factory=lambda: UsageSample(0.0, 0, 0))


class OutputFile(NamedTuple):
    name: str  # sanitised, relative, '/'-separated
    size: int
    sha256: str
    path: Path  # where the agent reads it; valid until cleanup()


class OwnedContainer(NamedTuple):
    job_id: int
    attempt: int
    container_id: str
    state: str  # Docker's state: created, running, exited ...
    role: Literal["install", "run"]


class Runtime(Protocol):
    """What the agent needs from a sandbox. Calls for one attempt go in this order:
    prepare -> start -> (logs, usage, cancel from other threads) -> wait -> collect_outputs ->
    cleanup. ``logs`` and ``wait`` block; run them in threads. ``readiness_check`` (blocking
    too) says whether a job could start now: "" when ready, else why not, for the owner.
    ``disk_quota_active`` (blocking the first time: it may probe) says whether /work and
    /outputs are size-limited file systems (hello ``specs.disk_quota``)."""

    isolation: Isolation

    def readiness_check(self) -> str: ...

    def disk_quota_active(self) -> bool: ...

    def prepare(self, spec: JobSpec) -> Prepared: ...

    def start(self, prepared: Prepared) -> Handle: ...

    def attach(self, job_id: int, attempt: int) -> Handle: ...

    def logs(self, handle: Handle) -> Iterator[bytes]: ...

    def wait(self, handle: Handle) -> Outcome: ...

    def cancel(
        self,
        handle: Handle,
        grace_seconds: float,
        *,
        status: StopStatus = "cancelled",
        reason: str = "cancelled",
    ) -> None: ...

    def usage(self, handle: Handle) -> UsageSample: ...

    def collect_outputs(self, handle: Handle) -> list[OutputFile]: ...

    def cleanup(self, handle: Handle) -> None: ...

    def list_own(self) -> list[OwnedContainer]: ...

    def kill(self, job_id: int, attempt: int) -> None: ...
