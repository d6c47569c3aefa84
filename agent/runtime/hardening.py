"""The Docker arguments of the two containers of an attempt, as pure functions.

Every flag here is a security or fairness decision; docs/sandbox.md says why each is there.
Keeping them out of the code that talks to Docker lets the unit tests pin them exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from agent.runtime.meter import METER_DIR, METER_MOUNT, wrapped
from agent.runtime.pool_network import job_network_problem
from agent.runtime.types import JobSpec, RuntimeSettings

ENV_MOUNT = "/opt/env"
WHEELHOUSE_MOUNT = "/wheelhouse"
WORK_MOUNT = "/work"
OUTPUTS_MOUNT = "/outputs"
# Paths inside the sandbox, never on the host: a private tmpfs per container.
SANDBOX_TMP = "/tmp"  # noqa: S108
CA_MOUNT = "/etc/communipute/pip-ca.pem"
LABEL_JOB = "communipute.job"
LABEL_ATTEMPT = "communipute.attempt"
LABEL_AGENT = "communipute.agent"
LABEL_INSTALL = "communipute.install"
LABEL_SERVER = "communipute.server"
LABEL_ROLE = "communipute.role"
LABEL_TIMEOUT = "communipute.timeout"
LABEL_MEMORY = "communipute.memory_mb"
LABEL_ENV_DATA = "communipute.env.data"
# The clean-up helper's mount point and limits: ``rm -rf`` needs little of either.
CLEANUP_MOUNT = "/attempt"
CLEANUP_MEMORY = "64m"
CLEANUP_PIDS = 16
# Bumped when the install recipe changes in a way that makes old environments unusable.
ENV_RECIPE = "1"

# Installs as the sandbox user: root in the install container only long enough to hand the
# fresh volume to that user (no other capability), then pip runs unprivileged.
_INSTALL_BOOTSTRAP = """\
import os, sys
uid, gid = (int(part) for part in sys.argv[1].split(":"))
os.chown(sys.argv[2], uid, gid)
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
os.execvp(sys.executable, [sys.executable, "-m", "pip", *sys.argv[3:]])
"""


def owner_labels(settings: RuntimeSettings) -> dict[str, str]:
    """The labels that make a container or volume this agent's: the host id (marker), the
    install id and the server's identity (those two only where set)."""
    labels = {LABEL_AGENT: settings.agent_marker}
    if settings.install_id:
        labels[LABEL_INSTALL] = settings.install_id
    if settings.server_id:
        labels[LABEL_SERVER] = settings.server_id
    return labels


def owner_filters(settings: RuntimeSettings) -> list[str]:
    """Docker label filters matching exactly this agent's containers and volumes."""
    return [f"{key}={value}" for key, value in owner_labels(settings).items()]


def labels_for(spec: JobSpec, settings: RuntimeSettings, role: str) -> dict[str, str]:
    return {
        LABEL_JOB: str(spec.job_id),
        LABEL_ATTEMPT: str(spec.attempt),
        **owner_labels(settings),
        LABEL_ROLE: role,
        LABEL_TIMEOUT: str(spec.timeout_seconds),
        LABEL_MEMORY: str(spec.memory_mb),
    }


def env_key(image_id: str, requirements: tuple[str, ...], settings: RuntimeSettings) -> str:
    """The cache key of an installed environment: what decides which files pip writes."""
    lines = [
        ENV_RECIPE,
        image_id,
        "wheels-only" if settings.install_only_wheels else "sdists-allowed",
        settings.pip_index_url or "",
        settings.pip_extra_index_url or "",
        *sorted("".join(line.split()).lower() for line in requirements),
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:24]


def _log_config(settings: RuntimeSettings) -> dict[str, Any]:
    half = max(settings.log_max_bytes // 2, 1024 * 1024)
    return {"type": "json-file", "config": {"max-size": str(half), "max-file": "2"}}


def _ulimits(settings: RuntimeSettings) -> list[dict[str, Any]]:
    return [
        {"Name": "nofile", "Soft": settings.nofile_limit, "Hard": settings.nofile_limit},
        {"Name": "nproc", "Soft": settings.nproc_limit, "Hard": settings.nproc_limit},
        {"Name": "core", "Soft": 0, "Hard": 0},
    ]


def _device_requests(gpus: int) -> list[dict[str, Any]]:
    return [{"Driver": "nvidia", "Count": gpus, "Capabilities": [["gpu"]]}]


JOB_NETWORKS_REFUSAL = "this host does not open networks to pool jobs"


def job_networks_refusal(spec: JobSpec, settings: RuntimeSettings | None, isolation: str) -> str:
    """Why this host refuses a pool job whose pool lists job networks, or "": its owner did not
    allow them (``pool_job_networks``), its runtime can't enforce them (only Docker, with the
    iptables rules of agent/runtime/pool_network.py), or a listed network is not a private
    IPv4 one (docs/pools.md "The run step's network")."""
    if spec.pool is None or not spec.pool.job_networks:
        return ""
    listed = ", ".join(spec.pool.job_networks[:4])
    if settings is None or not settings.pool_job_networks or isolation != "docker":
        return f"{JOB_NETWORKS_REFUSAL} (the pool lists {listed})"
    problems = [p for p in (job_network_problem(n) for n in spec.pool.job_networks) if p]
    if problems:
        return f"{JOB_NETWORKS_REFUSAL}: {problems[0]}"
    return ""


def run_kwargs(
    spec: JobSpec,
    settings: RuntimeSettings,
    attempt_dir: Path,
    env_volume: str | None,
    pool_network: str | None = None,
) -> dict[str, Any]:
    """Arguments for ``client.containers.create`` of the run step (the renter's script). A pool
    job's run step has no network, whatever it asked and the host allows: a pool may let its
    jobs reach only listed internal networks, never the internet; ``pool_network`` is then the
    Docker network whose egress only those reach (agent/runtime/pool_network.py), with IPv6
    off in the container (docs/pools.md "The run step's network")."""
    memory = f"{spec.memory_mb}m"
    volumes: dict[str, dict[str, str]] = {
        str(attempt_dir / "work"): {"bind": WORK_MOUNT, "mode": "rw"},
        str(attempt_dir / "outputs"): {"bind": OUTPUTS_MOUNT, "mode": "rw"},
        # The CPU meter the wrapper writes at the exit (agent/runtime/meter.py): renter input,
        # read back without following links and clipped.
        str(attempt_dir / METER_DIR): {"bind": METER_MOUNT, "mode": "rw"},
    }
    environment = {
        "HOME": SANDBOX_TMP,
        "TMPDIR": SANDBOX_TMP,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "COMMUNIPUTE_JOB_ID": str(spec.job_id),
        "COMMUNIPUTE_ATTEMPT": str(spec.attempt),
        "COMMUNIPUTE_OUTPUTS": OUTPUTS_MOUNT,
        **spec.task_environment(),
    }
    if env_volume is not None:
        volumes[env_volume] = {"bind": ENV_MOUNT, "mode": "ro"}
        environment["PYTHONPATH"] = ENV_MOUNT
        environment["PATH"] = f"{ENV_MOUNT}/bin:/usr/local/bin:/usr/bin:/bin"
    kwargs: dict[str, Any] = {
        "image": settings.image,
        # The script under the meter wrapper, which leaves its CPU time for an agent that was
        # down when it exited (agent/runtime/meter.py).
        "command": wrapped(["python3", spec.entrypoint]),
        "working_dir": WORK_MOUNT,
        "user": settings.run_user,
        "environment": environment,
        "labels": labels_for(spec, settings, "run"),
        "hostname": "sandbox",
        "network_mode": _run_network(spec, settings, pool_network),
        "read_only": True,
        "tmpfs": {SANDBOX_TMP: f"rw,noexec,nosuid,nodev,size={spec.disk.tmp_mb}m"},
        "volumes": volumes,
        "mem_limit": memory,
        "memswap_limit": memory,
        "nano_cpus": int(spec.cpus * 1_000_000_000),
        "pids_limit": settings.pids_limit,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "privileged": False,
        "init": True,
        "ipc_mode": "private",
        "ulimits": _ulimits(settings),
        # Under host-wide memory pressure the kernel should kill a job before the host's own
        # processes (the agent included); the job's own limit is enforced by its cgroup.
        "oom_score_adj": 500,
        "log_config": _log_config(settings),
    }
    if spec.gpus > 0:
        kwargs["device_requests"] = _device_requests(spec.gpus)
    if spec.pool is not None and pool_network is not None:
        kwargs["sysctls"] = {"net.ipv6.conf.all.disable_ipv6": "1"}
    return kwargs


def _run_network(spec: JobSpec, settings: RuntimeSettings, pool_network: str | None) -> str:
    """A pool job: its pool's network where it has one, else none. Any other job: the host's
    ``run_network`` only if the owner allows network and the job asked for it."""
    if spec.pool is not None:
        return pool_network if pool_network is not None else "none"
    return settings.run_network if spec.network_allowed and settings.network_allowed else "none"


def install_kwargs(
    spec: JobSpec,
    settings: RuntimeSettings,
    env_volume: str,
    labels: dict[str, str],
    *,
    wheelhouse: str | None = None,
) -> dict[str, Any]:
    """Arguments for ``client.containers.create`` of the install step: pip into the volume.

    From the index (with network), or, given a ``wheelhouse`` volume, from its wheels alone:
    mounted read-only, ``--no-index`` and no network at all, so nothing an install does can
    change what the next renter's install finds there."""
    only_binary = ["--only-binary=:all:"] if settings.install_only_wheels else []
    offline = ["--no-index", "--find-links", WHEELHOUSE_MOUNT] if wheelhouse else []
    pip_args = [
        "install",
        *_PIP_QUIET,
        "--no-warn-script-location",
        *offline,
        *only_binary,
        "--target",
        ENV_MOUNT,
        # Requirements are validated specifiers; '--' still keeps them from being options.
        "--",
        *spec.requirements,
    ]
    volumes: dict[str, dict[str, str]] = {env_volume: {"bind": ENV_MOUNT, "mode": "rw"}}
    if wheelhouse:
        volumes[wheelhouse] = {"bind": WHEELHOUSE_MOUNT, "mode": "ro"}
        return _pip_kwargs(settings, pip_args, volumes, labels, ENV_MOUNT, network="none")
    return _pip_kwargs(settings, pip_args, volumes, labels, ENV_MOUNT, network=None)


def download_kwargs(
    spec: JobSpec, settings: RuntimeSettings, wheelhouse: str, labels: dict[str, str]
) -> dict[str, Any]:
    """Arguments for the wheelhouse's download step: ``pip download --only-binary=:all:``
    into the shared volume, with network. Binary wheels only, so no package's code runs here
    (an sdist would be built, running its setup.py with the shared volume writable)."""
    pip_args = [
        "download",
        *_PIP_QUIET,
        "--only-binary=:all:",
        "--dest",
        WHEELHOUSE_MOUNT,
        "--",
        *spec.requirements,
    ]
    volumes = {wheelhouse: {"bind": WHEELHOUSE_MOUNT, "mode": "rw"}}
    return _pip_kwargs(settings, pip_args, volumes, labels, WHEELHOUSE_MOUNT, network=None)


def wheelhouse_name(settings: RuntimeSettings) -> str:
    """The wheelhouse volume of this host's index: wheels of one index never mix with
    another's (the same file name could hold other bytes there)."""
    index = "\n".join((settings.pip_index_url or "", settings.pip_extra_index_url or ""))
    return f"{settings.wheelhouse_volume}-{hashlib.sha256(index.encode()).hexdigest()[:12]}"


_PIP_QUIET = (
    "--no-cache-dir",
    "--disable-pip-version-check",
    "--no-input",
    "--progress-bar",
    "off",
)


def _pip_kwargs(
    settings: RuntimeSettings,
    pip_args: list[str],
    volumes: dict[str, dict[str, str]],
    labels: dict[str, str],
    writable: str,
    *,
    network: str | None,
) -> dict[str, Any]:
    """A pip container: root only long enough to hand ``writable`` to the sandbox user, the
    host's index and CA bundle where it has network (``network`` None: install_network)."""
    environment = {"HOME": SANDBOX_TMP, "TMPDIR": SANDBOX_TMP, "PYTHONDONTWRITEBYTECODE": "1"}
    volumes = dict(volumes)
    if network is None:
        if settings.pip_index_url:
            environment["PIP_INDEX_URL"] = settings.pip_index_url
        if settings.pip_extra_index_url:
            environment["PIP_EXTRA_INDEX_URL"] = settings.pip_extra_index_url
        if settings.pip_cert_path is not None:
            volumes[str(settings.pip_cert_path)] = {"bind": CA_MOUNT, "mode": "ro"}
            environment["PIP_CERT"] = CA_MOUNT
    memory = f"{settings.install_memory_mb}m"
    return {
        "image": settings.image,
        "command": [
            "python3",
            "-c",
            _INSTALL_BOOTSTRAP,
            settings.run_user,
            writable,
            *pip_args,
        ],
        "user": "0:0",
        "environment": environment,
        "labels": labels,
        "network_mode": settings.install_network if network is None else network,
        "read_only": True,
        # Builds of source packages may run what they compile under /tmp: exec is allowed here.
        "tmpfs": {SANDBOX_TMP: "rw,nosuid,nodev,size=2048m"},
        "volumes": volumes,
        "mem_limit": memory,
        "memswap_limit": memory,
        "nano_cpus": int(settings.install_cpus * 1_000_000_000),
        "pids_limit": settings.pids_limit,
        "cap_drop": ["ALL"],
        "cap_add": ["CHOWN", "SETUID", "SETGID"],
        "security_opt": ["no-new-privileges:true"],
        "privileged": False,
        "init": True,
        "ulimits": _ulimits(settings),
        "log_config": _log_config(settings),
    }


def cleanup_kwargs(settings: RuntimeSettings, attempt_dir: Path) -> dict[str, Any]:
    """Arguments for ``client.containers.run`` of the clean-up helper: an unprivileged agent
    can't delete what the sandbox user wrote, so root with only ``CAP_DAC_OVERRIDE`` does, with
    no network and the same limits as every other container (it runs ``rm`` over a tree the
    job filled). No labels: it is not an attempt's container, and it removes itself."""
    return {
        "image": settings.image,
        "command": [
            "rm",
            "-rf",
            "--",
            f"{CLEANUP_MOUNT}/work",
            f"{CLEANUP_MOUNT}/outputs",
            f"{CLEANUP_MOUNT}/{METER_DIR}",
        ],
        "volumes": {str(attempt_dir): {"bind": CLEANUP_MOUNT, "mode": "rw"}},
        "user": "0:0",
        "network_mode": "none",
        "read_only": True,
        "mem_limit": CLEANUP_MEMORY,
        "memswap_limit": CLEANUP_MEMORY,
        "nano_cpus": 1_000_000_000,
        "pids_limit": CLEANUP_PIDS,
        "cap_drop": ["ALL"],
        "cap_add": ["DAC_OVERRIDE"],
        "security_opt": ["no-new-privileges:true"],
        "privileged": False,
        "init": True,
        "ulimits": _ulimits(settings),
        "log_config": _log_config(settings),
        "remove": True,
    }
