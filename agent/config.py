"""The agent's configuration: a JSON file, then the environment, then command-line flags.

The file (default ``~/.config/communipute/agent.json``, or ``$COMMUNIPUTE_AGENT_CONFIG``, or
``--config``) holds what ``enroll`` received — the server, the host id and the credential —
and may hold any other setting below. It is written with 0600 permissions because the
credential is a bearer secret. Each setting can be overridden by its environment variable
(``ENV_NAMES``) and by a flag of ``communipute-agent run``.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger("agent")

DEFAULT_RUNNER_IMAGE = "python:3.12-slim"
CONFIG_ENV = "COMMUNIPUTE_AGENT_CONFIG"

# setting -> environment variable
ENV_NAMES: dict[str, str] = {
    "server": "COMMUNIPUTE_SERVER",
    "work_dir": "COMMUNIPUTE_WORK_DIR",
    "runner_image": "COMMUNIPUTE_RUNNER_IMAGE",
    "pip_index_url": "COMMUNIPUTE_PIP_INDEX_URL",
    "pip_extra_index_url": "COMMUNIPUTE_PIP_EXTRA_INDEX_URL",
    "pip_cert": "COMMUNIPUTE_PIP_CERT",
    "slots": "COMMUNIPUTE_SLOTS",
    "allow_network": "COMMUNIPUTE_ALLOW_NETWORK",
    "ca_bundle": "COMMUNIPUTE_CA_BUNDLE",
    "job_manager": "COMMUNIPUTE_JOB_MANAGER",
    "allow_unisolated": "COMMUNIPUTE_ALLOW_UNISOLATED",
    "log_level": "COMMUNIPUTE_LOG_LEVEL",
    "backoff_initial_seconds": "COMMUNIPUTE_BACKOFF_INITIAL_SECONDS",
    "backoff_max_seconds": "COMMUNIPUTE_BACKOFF_MAX_SECONDS",
    "cache_max_mb": "COMMUNIPUTE_CACHE_MAX_MB",
    "fetch_max_mb": "COMMUNIPUTE_FETCH_MAX_MB",
    "fetch_allow_networks": "COMMUNIPUTE_FETCH_ALLOW_NETWORKS",
    "fetch_allow_hosts": "COMMUNIPUTE_FETCH_ALLOW_HOSTS",
    "pool_fetch": "COMMUNIPUTE_POOL_FETCH",
    "pool_job_networks": "COMMUNIPUTE_POOL_JOB_NETWORKS",
    "fetch_credentials_file": "COMMUNIPUTE_FETCH_CREDENTIALS_FILE",
    "disk_quotas": "COMMUNIPUTE_DISK_QUOTAS",
    "job_disk_max_mb": "COMMUNIPUTE_JOB_DISK_MAX_MB",
    "disk_reserve_mb": "COMMUNIPUTE_DISK_RESERVE_MB",
    "wheelhouse": "COMMUNIPUTE_WHEELHOUSE",
    "env_cache_max_mb": "COMMUNIPUTE_ENV_CACHE_MAX_MB",
    # Pools' output stores (agent/poolstore.py): this host's credentials, never sent.
    "pool_store_access_key_id": "COMMUNIPUTE_POOL_STORE_ACCESS_KEY_ID",
    "pool_store_secret_access_key": "COMMUNIPUTE_POOL_STORE_SECRET_ACCESS_KEY",
    "pool_store_session_token": "COMMUNIPUTE_POOL_STORE_SESSION_TOKEN",
    "pool_store_credentials_file": "COMMUNIPUTE_POOL_STORE_CREDENTIALS_FILE",
}
# Older names of settings, still read (file key or environment variable) -> the setting.
SETTING_ALIASES = {"max_concurrent_jobs": "slots"}
ENV_ALIASES = {"COMMUNIPUTE_MAX_JOBS": "slots"}
# Kept in the file by `enroll`; never taken from the environment.
ENROLLMENT_KEYS = ("server", "host_id", "credential", "install_id")
# How many jobs a host may run side by side (agent/protocol.py MAX_SLOTS).
MIN_SLOTS, MAX_SLOTS = 1, 64
# The automatic slot count gives each slot at least this much memory.
SLOT_MEMORY_MB = 2048
DISK_QUOTA_MODES = ("auto", "on", "off")
MAX_DISK_SETTING_MB = 16 * 1024 * 1024  # 16 TiB, the protocol's bound on a job's disk
_INSTALL_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# The blob cache (agent/runtime/blobcache.py) and the renter-URL fetch cap, in MB: 0..16 TiB
# for the cache (0: keep only what attempts use now), 1 MB..1 TiB for one fetch.
MAX_CACHE_MB = 16 * 1024 * 1024
MAX_FETCH_MB = 1024 * 1024
MAX_FETCH_LIST = 100
_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
# fetch_credentials_file: at most this many prefixes, headers per prefix, and characters.
MAX_CREDENTIAL_PREFIXES = 100
MAX_CREDENTIAL_HEADERS = 20
MAX_CREDENTIAL_CHARS = 8192
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
# Headers the fetcher sets itself; a credentials file may not replace them.
_FETCHER_HEADERS = {"host", "range", "user-agent", "accept-encoding", "content-length"}


class ConfigError(ValueError):
    """A setting has a value the agent cannot use; the message names it."""


def config_path_default(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "communipute" / "agent.json"


def _work_dir_default() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "communipute" / "work"


@dataclass(frozen=True)
class AgentConfig:
    path: Path
    server: str = ""  # http(s)://host[:port] of the CommuniPute server
    host_id: int | None = None
    credential: str = ""
    # Generated at enrollment (or on the first start of an older config): this installation's
    # containers and volumes carry it, so agents sharing a Docker engine never touch each
    # other's (agent/runtime/hardening.py labels).
    install_id: str = ""
    # Job runtime settings (agent/runtime/ builds its RuntimeSettings from these).
    work_dir: Path = field(default_factory=_work_dir_default)
    runner_image: str = DEFAULT_RUNNER_IMAGE
    pip_index_url: str = ""
    pip_extra_index_url: str = ""
    pip_cert: str = ""  # CA bundle on this host for pip inside the install step (PIP_CERT)
    # Jobs side by side (1-64); 0: automatic, from the cores and the memory (slots_default).
    slots: int = 0
    allow_network: bool = False  # the owner's local veto on network for the run step
    # /work and /outputs as size-limited file systems (agent/runtime/quota.py): "auto" where
    # the agent is root and loop devices work, "on" (not ready where they don't), "off".
    disk_quotas: str = "auto"
    # The most disk (MB) one job may ask for; 0: a slot's share of the free disk less the
    # reserve. Jobs together never get the last disk_reserve_mb of the work dir's disk.
    job_disk_max_mb: int = 0
    disk_reserve_mb: int = 1024
    # Warm environments: true keeps a shared Docker volume of downloaded wheels that installs
    # use read-only; cached environments are pruned LRU to env_cache_max_mb.
    wheelhouse: bool = True
    env_cache_max_mb: int = 10 * 1024
    # Connection to the server.
    ca_bundle: str = ""  # CA bundle to verify the server's TLS certificate
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    # Which JobManager runs jobs (agent/job_manager_protocol.py): "auto" (Docker when an engine
    # answers), "docker", "process" (no isolation: needs allow_unisolated), "none" (offers are
    # rejected with "no runtime configured"), or a factory "package.module:function".
    job_manager: str = "auto"
    # The process runtime runs renters' code without any isolation: a local demo only.
    allow_unisolated: bool = False
    log_level: str = "INFO"
    # Job inputs (docs/agent.md "Inputs and the blob cache").
    cache_max_mb: int = 10240  # the cache is evicted (LRU, never a file in use) to this size
    fetch_max_mb: int = 5120  # a renter URL's file may be at most this big
    # CIDRs a renter URL may resolve to although private/loopback/link-local (a lab network).
    fetch_allow_networks: tuple[str, ...] = ()
    # When set, renter URLs only from these host names ("*.example.org": its subdomains).
    fetch_allow_hosts: tuple[str, ...] = ()
    # The host owner's word on private pools' fetch rules (docs/pools.md "Inputs stay
    # inside"): true, a pool job's URL inputs may also reach the networks and names its pool
    # lists (an institution's own machine); false (a volunteer's), only what this host allows.
    pool_fetch: bool = False
    # The same for the run step (docs/pools.md "The run step's network"): true, a pool job may
    # join a Docker network that reaches only the private IPv4 CIDRs its pool lists (iptables
    # in DOCKER-USER and INPUT: the agent must be root); false, such a job is refused.
    pool_job_networks: bool = False
    # A JSON file (0600) of URL prefix -> headers ({"https://data.internal/": {"Authorization":
    # "Bearer …"}}) sent with a pool job's URL inputs under that prefix only; never to the server.
    fetch_credentials_file: str = ""
    # Pools' output stores (docs/pools.md, "Outputs leave only when released"): the S3
    # credentials this host writes a pool's outputs and logs with. One set for every pool
    # (access key id + secret, optional session token), and/or a JSON file (0600) of
    # {"<pool id>" | "*": {access_key_id, secret_access_key, session_token?}}, which wins for
    # the pools it names. Never sent to the server; without them a job of a pool that keeps
    # its outputs fails here as a host fault before it runs.
    pool_store_access_key_id: str = ""
    pool_store_secret_access_key: str = ""
    pool_store_session_token: str = ""
    pool_store_credentials_file: str = ""

    @property
    def is_enrolled(self) -> bool:
        return bool(self.server and self.host_id and self.credential)

    @property
    def state_path(self) -> Path:
        """Written by a running agent for ``communipute-agent status``."""
        return self.path.with_name(self.path.stem + ".state.json")

    @property
    def control_path(self) -> Path:
        """Written by ``communipute-agent drain`` for the running agent to pick up."""
        return self.path.with_name(self.path.stem + ".drain")

    @property
    def slots_effective(self) -> int:
        """The slots setting, or the automatic count where it is 0."""
        return self.slots or slots_default()

    @property
    def server_id(self) -> str:
        """The server's identity on container labels: a digest of its URL."""
        return server_identity(self.server)

    @property
    def websocket_url(self) -> str:
        parts = urlsplit(self.server)
        scheme = {"http": "ws", "https": "wss"}[parts.scheme]
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws/agent/", "", ""))


_SETTING_NAMES = {f.name for f in fields(AgentConfig)} - {"path"}


def slots_default(cpus: int | None = None, memory_mb: int | None = None) -> int:
    """One slot per core, as long as each gets ``SLOT_MEMORY_MB`` of memory; 1 to 64."""
    if cpus is None:
        cpus = os.cpu_count() or 1
    if memory_mb is None:
        import psutil

        memory_mb = psutil.virtual_memory().total // (1024 * 1024)
    return max(MIN_SLOTS, min(MAX_SLOTS, cpus, memory_mb // SLOT_MEMORY_MB))


def server_identity(server: str) -> str:
    """A short, stable digest of the server URL (16 hex characters); "" without a server."""
    if not server:
        return ""
    return hashlib.sha256(server.rstrip("/").lower().encode()).hexdigest()[:16]


def install_id_new() -> str:
    return secrets.token_hex(16)


def config_load(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Defaults, then the file, then the environment, then ``overrides`` (flags; None = unset)."""
    env = os.environ if env is None else env
    path = path or config_path_default(env)
    values: dict[str, Any] = {}
    stored = _file_read(path)
    values.update({SETTING_ALIASES.get(k, k): v for k, v in stored.items() if k in SETTING_ALIASES})
    values.update({k: v for k, v in stored.items() if k not in SETTING_ALIASES})
    values.update({k: env[v] for v, k in ENV_ALIASES.items() if env.get(v, "") != ""})
    values.update({k: env[v] for k, v in ENV_NAMES.items() if env.get(v, "") != ""})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = set(values) - _SETTING_NAMES
    if unknown:
        raise ConfigError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
    return _validated(AgentConfig(path=path, **{k: _coerce(k, v) for k, v in values.items()}))


def config_save_enrollment(
    config: AgentConfig, *, server: str, host_id: int, credential: str
) -> AgentConfig:
    """Store the enrollment in the config file (0600), keeping the file's other settings, with
    a new install id (a new enrollment is a new installation)."""
    install_id = install_id_new()
    stored = _file_read(config.path)
    stored.update(
        {"server": server, "host_id": host_id, "credential": credential, "install_id": install_id}
    )
    file_write_private(config.path, json.dumps(stored, indent=2, sort_keys=True) + "\n")
    return replace(
        config, server=server, host_id=host_id, credential=credential, install_id=install_id
    )


def config_install_id_ensure(config: AgentConfig) -> AgentConfig:
    """An enrollment older than install ids gets one, written into the config file. Where the
    file can't be written (owned by another user) the id is derived from the credential
    instead: as stable across restarts, and as unique as the enrollment."""
    if config.install_id:
        return config
    install_id = install_id_new()
    try:
        stored = _file_read(config.path)
        stored["install_id"] = install_id
        file_write_private(config.path, json.dumps(stored, indent=2, sort_keys=True) + "\n")
    except (OSError, ConfigError) as exc:
        logger.warning("cannot store an install id in %s (%s): deriving one", config.path, exc)
        install_id = hashlib.sha256(f"install:{config.credential}".encode()).hexdigest()[:32]
    return replace(config, install_id=install_id)


def file_write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path``, readable by this user only (0600, dir 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _file_read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


_INTS = {
    "host_id",
    "slots",
    "cache_max_mb",
    "fetch_max_mb",
    "job_disk_max_mb",
    "disk_reserve_mb",
    "env_cache_max_mb",
}
_LISTS = {"fetch_allow_networks", "fetch_allow_hosts"}
_FLOATS = {"backoff_initial_seconds", "backoff_max_seconds"}
_BOOLS = {"allow_network", "allow_unisolated", "wheelhouse", "pool_fetch", "pool_job_networks"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _coerce(name: str, value: Any) -> Any:
    try:
        if name in _INTS:
            return None if value is None else int(value)
        if name in _FLOATS:
            return float(value)
        if name in _BOOLS:
            return _bool(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} has an invalid value {value!r}") from None
    if name in _LISTS:
        return _list(name, value)
    if name == "work_dir":
        return Path(str(value)).expanduser()
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {value!r}")
    return value


def _list(name: str, value: Any) -> tuple[str, ...]:
    """A JSON list in the file, or a comma-separated string (the environment, a flag)."""
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise ConfigError(f"{name} must be a list of strings or a comma-separated string")
    return tuple(item for item in items if item)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    raise ValueError(value)


def _validated(config: AgentConfig) -> AgentConfig:
    if config.server and urlsplit(config.server).scheme not in ("http", "https"):
        raise ConfigError(f"server must be an http:// or https:// URL, not {config.server!r}")
    if config.slots != 0 and not MIN_SLOTS <= config.slots <= MAX_SLOTS:
        raise ConfigError(f"slots must be within {MIN_SLOTS}..{MAX_SLOTS} (0: automatic)")
    if config.install_id and not _INSTALL_ID.fullmatch(config.install_id):
        raise ConfigError("install_id must be 8 to 64 letters, digits, '-' or '_'")
    if config.disk_quotas not in DISK_QUOTA_MODES:
        raise ConfigError(f"disk_quotas must be auto, on or off, not {config.disk_quotas!r}")
    for name in ("job_disk_max_mb", "disk_reserve_mb", "env_cache_max_mb"):
        if not 0 <= getattr(config, name) <= MAX_DISK_SETTING_MB:
            raise ConfigError(f"{name} must be within 0..{MAX_DISK_SETTING_MB}")
    if not 0 < config.backoff_initial_seconds <= config.backoff_max_seconds:
        raise ConfigError("backoff seconds must satisfy 0 < initial <= max")
    if not 0 <= config.cache_max_mb <= MAX_CACHE_MB:
        raise ConfigError(f"cache_max_mb must be within 0..{MAX_CACHE_MB}")
    if not 1 <= config.fetch_max_mb <= MAX_FETCH_MB:
        raise ConfigError(f"fetch_max_mb must be within 1..{MAX_FETCH_MB}")
    for name in ("fetch_allow_networks", "fetch_allow_hosts"):
        if len(getattr(config, name)) > MAX_FETCH_LIST:
            raise ConfigError(f"{name} has more than {MAX_FETCH_LIST} entries")
    for cidr in config.fetch_allow_networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"fetch_allow_networks: {cidr!r} is not a CIDR network") from None
    config = replace(
        config, fetch_allow_hosts=tuple(host.lower() for host in config.fetch_allow_hosts)
    )
    for host in config.fetch_allow_hosts:
        if not _HOST_NAME.fullmatch(host):
            raise ConfigError(f"fetch_allow_hosts: {host!r} is not a host name (or *.domain)")
    if bool(config.pool_store_access_key_id) != bool(config.pool_store_secret_access_key):
        raise ConfigError("pool_store_access_key_id and pool_store_secret_access_key go together")
    for name in ("pip_cert", "ca_bundle", "pool_store_credentials_file"):
        value = getattr(config, name)
        if value and not Path(value).expanduser().is_file():
            raise ConfigError(f"{name} {value!r} is not a file")
    if config.fetch_credentials_file:
        fetch_credentials_read(config.fetch_credentials_file)
    if config.pool_store_credentials_file:
        from agent.poolstore import credentials_file_read

        try:
            credentials_file_read(Path(config.pool_store_credentials_file).expanduser())
        except ValueError as exc:
            raise ConfigError(f"pool_store_credentials_file: {exc}") from None
    return replace(config, server=config.server.rstrip("/"))


def fetch_credentials_read(path: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The ``fetch_credentials_file``: a JSON object of URL prefix -> {header: value}, the
    file this user's alone (no group or other permission bits) and a regular file. ConfigError
    names the problem, never a value."""
    where = Path(path).expanduser()
    try:
        info = where.lstat()
    except OSError as exc:
        raise ConfigError(f"fetch_credentials_file {path!r}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"fetch_credentials_file {path!r} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"fetch_credentials_file {path!r} is readable by others "
            f"({stat.S_IMODE(info.st_mode):o}): chmod 600 it"
        )
    if info.st_uid != os.geteuid():
        raise ConfigError(f"fetch_credentials_file {path!r} belongs to another user")
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        kind = type(exc).__name__
        raise ConfigError(f"fetch_credentials_file {path!r} is not JSON ({kind})") from None
    if not isinstance(data, dict) or len(data) > MAX_CREDENTIAL_PREFIXES:
        raise ConfigError(
            f"fetch_credentials_file must hold an object of at most {MAX_CREDENTIAL_PREFIXES} "
            "URL prefixes"
        )
    rules: list[tuple[str, list[tuple[str, str]]]] = []
    for prefix, headers in data.items():
        parts = urlsplit(prefix)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.query
            or parts.fragment
        ):
            raise ConfigError(
                f"fetch_credentials_file: {prefix!r} is not an http(s)://host/path prefix"
            )
        if not isinstance(headers, dict) or not 1 <= len(headers) <= MAX_CREDENTIAL_HEADERS:
            raise ConfigError(
                f"fetch_credentials_file: {prefix!r} needs 1 to {MAX_CREDENTIAL_HEADERS} headers"
            )
        checked: list[tuple[str, str]] = []
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise ConfigError(f"fetch_credentials_file: {prefix!r} has a bad header name")
            if name.lower() in _FETCHER_HEADERS:
                raise ConfigError(f"fetch_credentials_file: {prefix!r} may not set {name}")
            if (
                not isinstance(value, str)
                or len(value) > MAX_CREDENTIAL_CHARS
                or any(c in value for c in "\r\n\x00")
            ):
                raise ConfigError(
                    f"fetch_credentials_file: the {name} of {prefix!r} must be one line of text"
                )
            checked.append((name, value))
        rules.append((prefix, checked))
    return rules
