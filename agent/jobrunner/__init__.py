"""The runtime-backed job manager and the factories the ``job_manager`` setting names.

    auto     agent.jobrunner:auto_job_manager     Docker, once the engine answers
    docker   agent.jobrunner:docker_job_manager   Docker, or refuse to start
    process  agent.jobrunner:process_job_manager  NO ISOLATION: only with allow_unisolated

Each is called with the ``AgentConfig`` and builds the runtime's settings from it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.config import AgentConfig, ConfigError, fetch_credentials_read
from agent.job_manager_protocol import JobManager, RejectingJobManager
from agent.jobrunner.attempt import AttemptRun
from agent.jobrunner.options import RunnerOptions
from agent.jobrunner.runtime_manager import Capacity, RuntimeJobManager
from agent.jobrunner.uploads import TusOutputUploader
from agent.poolstore import pool_stores_from_config
from agent.runtime.blobcache import (
    BlobCache,
    FetchCredentials,
    FetchPolicy,
    context_with_ca,
    networks_parse,
)
from agent.runtime.types import DiskQuotaMode, RuntimeSettings

logger = logging.getLogger("agent.jobs")

# The shared wheelhouse volume of the warm environments (agent/runtime/docker_runtime.py).
WHEELHOUSE_VOLUME = "communipute-wheelhouse"

__all__ = [
    "AttemptRun",
    "Capacity",
    "RunnerOptions",
    "RuntimeJobManager",
    "auto_job_manager",
    "blob_cache_from_config",
    "capacity_from_config",
    "docker_job_manager",
    "process_job_manager",
    "runtime_settings_from_config",
]


def runtime_settings_from_config(config: AgentConfig) -> RuntimeSettings:
    """The runtime's settings; containers are marked with the host id, the install id and the
    server's identity, so a restarted agent finds its own and leaves other agents' containers
    on the same engine alone (even those of an agent with the same host id elsewhere)."""
    return RuntimeSettings(
        work_root=config.work_dir,
        image=config.runner_image,
        agent_marker=str(config.host_id),
        install_id=config.install_id,
        server_id=config.server_id,
        pip_index_url=config.pip_index_url or None,
        pip_extra_index_url=config.pip_extra_index_url or None,
        pip_cert_path=Path(config.pip_cert).expanduser() if config.pip_cert else None,
        network_allowed=config.allow_network,
        pool_job_networks=config.pool_job_networks,
        disk_quotas=_disk_quota_mode(config.disk_quotas),
        wheelhouse_volume=WHEELHOUSE_VOLUME if config.wheelhouse else "",
        env_cache_max_mb=config.env_cache_max_mb,
    )


def _disk_quota_mode(value: str) -> DiskQuotaMode:
    if value == "on":
        return "on"
    if value == "off":
        return "off"
    return "auto"  # config.py refused anything else


def capacity_from_config(config: AgentConfig) -> Capacity:
    """What the host gives its jobs together: its slots and the cores, memory and GPUs the
    machine has (agent/specs.py)."""
    from agent.specs import specs_collect

    specs = specs_collect(config.work_dir)
    return Capacity(
        slots=config.slots_effective,
        cpus=float(specs["cpus"]),
        memory_mb=int(specs["memory_mb"]),
        gpus=len(specs["gpus"]),
        work_root=config.work_dir,
        disk_reserve_mb=config.disk_reserve_mb,
        job_disk_max_mb=config.job_disk_max_mb,
    )


def _uploader(config: AgentConfig) -> TusOutputUploader:
    return TusOutputUploader(config.server, config.credential, config.ca_bundle)


def blob_cache_from_config(config: AgentConfig) -> BlobCache:
    """The host's input cache under ``<work_dir>/cache/blobs``; store URLs verified with the
    system CAs plus ``ca_bundle``, renter URLs with the system CAs only."""
    return BlobCache.for_work_root(
        config.work_dir,
        max_bytes=config.cache_max_mb * 1024 * 1024,
        server=config.server,
        policy=FetchPolicy(
            allow_networks=networks_parse(config.fetch_allow_networks),
            allow_hosts=config.fetch_allow_hosts,
            max_bytes=config.fetch_max_mb * 1024 * 1024,
        ),
        store_context=context_with_ca(config.ca_bundle),
        pool_fetch=config.pool_fetch,
        credentials=FetchCredentials(
            fetch_credentials_read(config.fetch_credentials_file)
            if config.fetch_credentials_file
            else ()
        ),
    )


def docker_job_manager(config: AgentConfig) -> RuntimeJobManager:
    """Jobs in hardened Docker containers; ConfigError when no engine answers."""
    from docker.errors import DockerException

    from agent.runtime.docker_runtime import DockerRuntime

    settings = runtime_settings_from_config(config)
    try:
        runtime = DockerRuntime(settings)
        runtime.client.ping()
    except DockerException as exc:
        raise ConfigError(f"the Docker engine does not answer: {exc}") from None
    logger.info("running jobs in Docker (image %s)", settings.image)
    return RuntimeJobManager(
        runtime,
        uploader=_uploader(config),
        capacity=capacity_from_config(config),
        blob_cache=blob_cache_from_config(config),
        pool_stores=pool_stores_from_config(config),
    )


def process_job_manager(config: AgentConfig) -> RuntimeJobManager:
    """Jobs as plain child processes, for the local demo. It isolates NOTHING, so it needs
    ``allow_unisolated`` (COMMUNIPUTE_ALLOW_UNISOLATED=1) set explicitly."""
    from agent.runtime.process_runtime import ProcessRuntime

    if not config.allow_unisolated:
        raise ConfigError(
            "the process job manager isolates nothing; set allow_unisolated "
            "(COMMUNIPUTE_ALLOW_UNISOLATED=1) to use it for a local demo"
        )
    runtime = ProcessRuntime(runtime_settings_from_config(config), allow_unisolated=True)
    return RuntimeJobManager(
        runtime,
        uploader=_uploader(config),
        capacity=capacity_from_config(config),
        blob_cache=blob_cache_from_config(config),
        pool_stores=pool_stores_from_config(config),
    )


def auto_job_manager(config: AgentConfig) -> JobManager:
    """The default: Docker. When the engine does not answer yet (the agent started before
    dockerd, or the engine is down), the agent is not ready and rejects every offer until a
    readiness check finds the engine answering; then it runs jobs without a restart."""
    try:
        return docker_job_manager(config)
    except ConfigError as exc:
        try:
            from agent.runtime.docker_later import DockerRuntimeLater
        except ImportError:  # the agent was installed without the Docker SDK
            logger.warning("no usable job runtime (%s): this agent rejects every job offer", exc)
            return RejectingJobManager()
        logger.warning("%s: taking no jobs until it does (checked every minute)", exc)
        return RuntimeJobManager(
            DockerRuntimeLater(runtime_settings_from_config(config)),
            uploader=_uploader(config),
            capacity=capacity_from_config(config),
            blob_cache=blob_cache_from_config(config),
            pool_stores=pool_stores_from_config(config),
        )
