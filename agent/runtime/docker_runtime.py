"""The Docker runtime: an install container (pip, with network) and a hardened run container.

Blocking calls (``logs``, ``wait``, ``cancel``) talk to the engine over its socket; the agent
runs them in threads. The engine is the record of what runs: containers carry labels, so a new
``DockerRuntime`` finds the containers of an earlier one (``list_own``, ``attach``, ``kill``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import secrets
import select
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from agent.runtime import cgroup, envcache, hardening, quota
from agent.runtime.files import attempt_dir_create, attempt_dir_path, outputs_collect, tree_remove
from agent.runtime.inputs import INPUTS_DIR, INPUTS_MOUNT
from agent.runtime.meter import METER_DIR, meter_clip, meter_read
from agent.runtime.pool_network import PoolNetworkError, PoolNetworks
from agent.runtime.reasons import (
    HOST_CERT_REASON,
    HOST_LOST_REASON,
    HOST_QUOTA_REASON,
    attempt_outcome,
    disk_full_outcome,
    install_host_problem,
    log_tail,
)
from agent.runtime.types import (
    Handle,
    Isolation,
    JobSpec,
    Outcome,
    OutputFile,
    OwnedContainer,
    Prepared,
    RuntimeSettings,
    StopStatus,
    UsageSample,
    host_fault,
)

log = logging.getLogger(__name__)

ENV_PREFIX = "communipute-env-"
LABEL_WHEELHOUSE = "communipute.wheelhouse"
# Below this much free disk where attempts go, the host is not ready (readiness_check).
MIN_FREE_DISK_MB = 256
# After the engine reported the exit, how long wait() gives the exit watcher's last sample.
EXIT_WATCH_JOIN_SECONDS = 2.0
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TIMEOUTS = (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError)


def rechunk(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Split a byte stream's chunks so none is longer than ``size``; order is kept."""
    for chunk in chunks:
        for start in range(0, len(chunk), size):
            yield chunk[start : start + size]


class DockerRuntime:
    """Runs attempts in Docker containers with the hardening of hardening.run_kwargs."""

    isolation: Isolation = "docker"

    def __init__(self, settings: RuntimeSettings, client: Any | None = None) -> None:
        self.settings = settings
        self.client: Any = client if client is not None else docker.from_env(timeout=60)
        self._env_locks: dict[str, threading.Lock] = {}
        self._env_locks_guard = threading.Lock()
        # The environment each prepared attempt uses, until its clean-up (never pruned).
        self._env_held: dict[tuple[int, int], str] = {}
        self._env_uses = envcache.UseRecord(settings.work_root)
        self._cgroups: dict[str, cgroup.CgroupDirs | None] = {}
        # usage() runs in the sampler's threads, the exit watcher's and wait()'s: one at a time.
        self._usage_lock = threading.Lock()
        owner = "\n".join((settings.agent_marker, settings.install_id, settings.server_id))
        self._marker_hash = hashlib.sha256(owner.encode()).hexdigest()[:8]
        # The disk-quota probe's verdict ("" works, else why not); None until it ran. A success
        # is kept; a failure is probed again at the next readiness check.
        self._quota_problem: str | None = None
        self._quota_lock = threading.Lock()
        # The private pools' run networks (docs/pools.md "The run step's network").
        self.pool_networks = PoolNetworks(
            self.client,
            install_id=settings.install_id,
            server_id=settings.server_id,
            labels=hardening.owner_labels(settings),
        )

    # --- readiness -------------------------------------------------------------------------

    def readiness_check(self) -> str:
        """ "" when a job could start now: the engine answers, the runner image is here (or was
        pulled just now) and the disk has room. Otherwise why not, in the engine's words."""
        try:
            self.client.ping()
        except (DockerException, requests.exceptions.RequestException) as exc:
            return f"the Docker engine does not answer: {exc}"
        try:
            self.image_id()
        except (DockerException, requests.exceptions.RequestException) as exc:
            return f"the runner image {self.settings.image} is missing and cannot be pulled: {exc}"
        free_mb = _free_disk_mb(self.settings.work_root)
        if free_mb is not None and free_mb < MIN_FREE_DISK_MB:
            return f"only {free_mb} MB of disk free under {self.settings.work_root}"
        if self.settings.disk_quotas == "on":
            problem = self._quota_probe(again=True)
            if problem:
                return f"disk quotas are on (disk_quotas) but do not work here: {problem}"
        return ""

    def disk_quota_active(self) -> bool:
        """Whether jobs get size-limited /work and /outputs (agent/runtime/quota.py): never
        with ``disk_quotas=off``; with ``auto`` and ``on`` where the probe found it works."""
        return self.settings.disk_quotas != "off" and self._quota_probe() == ""

    def _quota_probe(self, *, again: bool = False) -> str:
        with self._quota_lock:
            if self._quota_problem is None or (again and self._quota_problem):
                self._quota_problem = quota.probe(self.settings.work_root)
                if self._quota_problem and self.settings.disk_quotas == "auto":
                    log.warning("jobs get no disk quota: %s", self._quota_problem)
            return self._quota_problem

    # --- install step ----------------------------------------------------------------------

    def image_id(self) -> str:
        """The id of the configured image, pulled first where it is missing."""
        try:
            image = self.client.images.get(self.settings.image)
        except ImageNotFound:
            log.info("pulling the runner image %s", self.settings.image)
            image = self.client.images.pull(self.settings.image)
        return str(image.id)

    def prepare(self, spec: JobSpec) -> Prepared:
        """Install the requirements (or reuse a cached environment) and write the job's files.

        An install that fails is not an error: the Prepared carries a failed Outcome. Engine
        trouble (no daemon, an image that can't be pulled) raises docker.errors.DockerException.
        """
        image_id = self.image_id()  # pull a missing image now, not at start
        env_volume, install_log, failure, cached = self._env_ensure(spec, image_id)
        if failure is not None:
            directory = attempt_dir_path(self.settings.work_root, spec.job_id, spec.attempt)
            return Prepared(spec, directory, None, install_log, failure)
        if self.settings.disk_quotas == "on" and not self.disk_quota_active():
            # Never run a job without the limits the owner said every job gets.
            problem = self._quota_probe()
            return self._not_prepared(spec, host_fault(HOST_QUOTA_REASON, problem), install_log)
        directory = attempt_dir_create(
            self.settings.work_root,
            spec.job_id,
            spec.attempt,
            spec.files,
            self.settings.run_user,
            disk_quota=spec.disk if self.disk_quota_active() else None,
        )
        return Prepared(spec, directory, env_volume, install_log, None, env_cached=cached)

    def _not_prepared(self, spec: JobSpec, failure: Outcome, install_log: bytes) -> Prepared:
        directory = attempt_dir_path(self.settings.work_root, spec.job_id, spec.attempt)
        return Prepared(spec, directory, None, install_log, failure)

    def _env_lock(self, key: str) -> threading.Lock:
        with self._env_locks_guard:
            return self._env_locks.setdefault(key, threading.Lock())

    def _env_ensure(
        self, spec: JobSpec, image_id: str
    ) -> tuple[str | None, bytes, Outcome | None, bool]:
        if not spec.requirements:
            return None, b"", None, False
        cert = self.settings.pip_cert_path
        if cert is not None and not cert.is_file():
            detail = f"the CA bundle {cert} (pip_cert) is not a file on this host"
            return None, b"", host_fault(HOST_CERT_REASON, detail), False
        key = hardening.env_key(image_id, spec.requirements, self.settings)
        with self._env_lock(key):
            found = self._env_lookup(key)
            if found is not None:
                self._env_hold(spec, key, found)
                return found, b"", None, True
            volume, output, failure, cached = self._env_install(spec, key)
            if volume is not None:
                self._env_hold(spec, key, volume)
        if volume is not None:
            self.env_cache_prune()
        return volume, output, failure, cached

    def _env_hold(self, spec: JobSpec, key: str, volume: str) -> None:
        """The attempt uses ``volume`` until its clean-up: pruning leaves it alone."""
        with self._env_locks_guard:
            self._env_held[(spec.job_id, spec.attempt)] = volume
        self._env_uses.touch(key, time.time())

    def _env_release(self, job_id: int, attempt: int) -> None:
        with self._env_locks_guard:
            self._env_held.pop((job_id, attempt), None)

    def env_cache_prune(self) -> list[str]:
        """Remove cached environments this agent made, least recently used first, until they
        fit ``env_cache_max_mb``; never one a container mounts or an attempt of this agent was
        prepared with. Another agent's on the same engine are its own to prune (this one may
        use them, and their use keeps them: they are mounted). Returns the keys removed."""
        envs = self._env_cached()
        plan = envcache.prune_plan(envs, self.settings.env_cache_max_mb * 1024 * 1024)
        removed = []
        for env in plan:
            with self._env_lock(env.key):
                with self._env_locks_guard:
                    if env.data_volume in self._env_held.values():
                        continue
                # The pointer first: from now on a lookup installs afresh instead of using it.
                self._volume_remove(ENV_PREFIX + env.key)
                self._volume_remove(env.data_volume)
            removed.append(env.key)
            log.info("pruned the cached environment %s (%d MB)", env.key, env.size_bytes >> 20)
        if removed:
            self._env_uses.forget(removed)
        return removed

    def _env_cached(self) -> list[envcache.CachedEnv]:
        """Every complete cached environment on the engine (a pointer volume naming its data
        volume), with the size and use count the engine reports (``docker system df``)."""
        usage = {
            str(volume.get("Name")): volume for volume in self.client.df().get("Volumes") or []
        }
        records = self._env_uses.read()
        owner = hardening.owner_labels(self.settings)
        with self._env_locks_guard:
            held = set(self._env_held.values())
        envs = []
        for name, pointer in usage.items():
            labels = pointer.get("Labels") or {}
            data = str(labels.get(hardening.LABEL_ENV_DATA, ""))
            key = str(labels.get("communipute.env", ""))
            if not name.startswith(ENV_PREFIX) or not data or not key or data not in usage:
                continue
            made_by = usage[data].get("Labels") or {}
            if any(made_by.get(label) != value for label, value in owner.items()):
                continue  # another agent's on this engine: its own cache to prune
            stats = usage[data].get("UsageData") or {}
            created = str(usage[data].get("CreatedAt") or "")
            envs.append(
                envcache.CachedEnv(
                    key=key,
                    data_volume=data,
                    size_bytes=max(int(stats.get("Size") or 0), 0),
                    last_used=records.get(key, _created_time(created)),
                    is_in_use=int(stats.get("RefCount") or 0) > 0 or data in held,
                )
            )
        return envs

    def _env_lookup(self, key: str) -> str | None:
        """The data volume of a complete environment. The pointer volume ``communipute-env-
        <key>`` is created only after pip succeeded, so a half-done install is never used."""
        try:
            pointer = self.client.volumes.get(ENV_PREFIX + key)
        except NotFound:
            return None
        data = str((pointer.attrs.get("Labels") or {}).get(hardening.LABEL_ENV_DATA, ""))
        try:
            self.client.volumes.get(data)
        except NotFound:
            self._volume_remove(ENV_PREFIX + key)
            return None
        return data

    def _env_install(
        self, spec: JobSpec, key: str
    ) -> tuple[str | None, bytes, Outcome | None, bool]:
        data = f"{ENV_PREFIX}{key}-{secrets.token_hex(4)}"
        # The environment cache is shared by every agent on the engine (its key is its
        # content); the labels only say which installation made it.
        labels = {"communipute.env": key, **hardening.owner_labels(self.settings)}
        self.client.volumes.create(name=data, labels=labels)
        try:
            exit_code, timed_out, output = self._install_run(spec, data)
        except BaseException:
            self._volume_remove(data)
            raise
        if timed_out or exit_code != 0:
            self._volume_remove(data)
            host_problem = None if timed_out else install_host_problem(output)
            if host_problem is not None:  # the host's index or disk, not the requirements
                return None, output, host_fault(host_problem, log_tail(output, 6, 1500)), False
            seconds = self.settings.install_timeout_seconds
            detail = f"timed out after {seconds} seconds" if timed_out else log_tail(output)
            if self.settings.install_only_wheels and not timed_out:
                detail += "\n(this host installs binary wheels only)"
            return None, output, Outcome("failed", f"install failed: {detail}"), False
        return self._env_publish(key, data), output, None, False

    def _install_run(self, spec: JobSpec, data: str) -> tuple[int, bool, bytes]:
        """Run pip into the volume ``data``: (exit code, timed out, output). With the
        wheelhouse: from its wheels alone first (no network); where some are missing, ``pip
        download`` fetches them into it (network, no package code runs) and the offline
        install runs again. All of it within ``install_timeout_seconds``."""
        labels = hardening.labels_for(spec, self.settings, "install")
        deadline = time.monotonic() + self.settings.install_timeout_seconds
        wheelhouse = self._wheelhouse_ensure()
        if wheelhouse is None:
            kwargs = hardening.install_kwargs(spec, self.settings, data, labels)
            return self._pip_run(spec, kwargs, deadline)
        offline = hardening.install_kwargs(spec, self.settings, data, labels, wheelhouse=wheelhouse)
        if self._wheelhouse_may_have(wheelhouse, spec.requirements):
            exit_code, timed_out, output = self._pip_run(spec, offline, deadline)
            if exit_code == 0 or timed_out:
                return exit_code, timed_out, output
        download = hardening.download_kwargs(spec, self.settings, wheelhouse, labels)
        exit_code, timed_out, fetched = self._pip_run(spec, download, deadline)
        if exit_code != 0 or timed_out:
            return exit_code, timed_out, fetched
        exit_code, timed_out, output = self._pip_run(spec, offline, deadline)
        return exit_code, timed_out, fetched + output

    def _wheelhouse_ensure(self) -> str | None:
        """The shared wheelhouse volume (made where missing), or None: off, or sdists are
        allowed (building one runs its code, which must never see a shared volume)."""
        if not self.settings.wheelhouse_volume or not self.settings.install_only_wheels:
            return None
        name = hardening.wheelhouse_name(self.settings)
        # Creating an existing volume returns it unchanged.
        self.client.volumes.create(name=name, labels={LABEL_WHEELHOUSE: "1"})
        return name

    def _wheelhouse_may_have(self, wheelhouse: str, requirements: tuple[str, ...]) -> bool:
        """False when the wheelhouse surely lacks a requirement (no wheel of that name in it):
        the try without network would fail, so the download goes first. True when each name
        has a wheel there (their own dependencies are pip's to find) or the volume's files
        can't be read from here (an unprivileged agent, a remote engine)."""
        try:
            mountpoint = Path(str(self.client.volumes.get(wheelhouse).attrs["Mountpoint"]))
            held = {_project_name(entry.name.split("-", 1)[0]) for entry in os.scandir(mountpoint)}
        except (DockerException, KeyError, OSError):
            return True
        return all(_project_name(_requirement_name(line)) in held for line in requirements)

    def _pip_run(
        self, spec: JobSpec, kwargs: dict[str, Any], deadline: float
    ) -> tuple[int, bool, bytes]:
        """One pip container of the install step, removed afterwards."""
        name = self._name(spec, "install")
        self._container_remove(name)  # left by an agent that died mid-install
        container = self.client.containers.create(name=name, **kwargs)
        timed_out = False
        try:
            container.start()
            try:
                timeout = max(deadline - time.monotonic(), 1.0)
                result = self.client.api.wait(container.id, timeout=timeout)
                exit_code = int(result.get("StatusCode", -1))
            except _TIMEOUTS:
                timed_out, exit_code = True, -1
                self._kill_quietly(container.id)
            output = bytes(self.client.api.logs(container.id, stdout=True, stderr=True))
        finally:
            self._container_remove(container.id)
        return exit_code, timed_out, output

    def _env_publish(self, key: str, data: str) -> str:
        """Point the cache at ``data``. Creating an existing volume returns it unchanged, so when
        another agent on this engine won the race its environment is used and ours dropped."""
        labels = {hardening.LABEL_ENV_DATA: data, "communipute.env": key}
        pointer = self.client.volumes.create(name=ENV_PREFIX + key, labels=labels)
        winner = str((pointer.attrs.get("Labels") or {}).get(hardening.LABEL_ENV_DATA, data))
        if winner != data:
            self._volume_remove(data)
        return winner

    # --- run step --------------------------------------------------------------------------

    def start(self, prepared: Prepared) -> Handle:
        if prepared.failure is not None:
            raise ValueError("this attempt failed to prepare; it cannot start")
        spec = prepared.spec
        pool_network = None
        if spec.pool is not None and spec.pool.job_networks:
            refusal = hardening.job_networks_refusal(spec, self.settings, self.isolation)
            if refusal:
                raise PoolNetworkError(refusal)
            # Its rules are written before the container exists (fail closed: raises).
            pool_network = self.pool_networks.ensure(spec.pool.id, spec.pool.job_networks)
        kwargs = hardening.run_kwargs(
            spec, self.settings, prepared.attempt_dir, prepared.env_ref, pool_network
        )
        inputs = prepared.attempt_dir / INPUTS_DIR
        if inputs.is_dir():  # the job's inputs, hard links to the host's cache (runtime/inputs.py)
            kwargs["volumes"][str(inputs)] = {"bind": INPUTS_MOUNT, "mode": "ro"}
            kwargs["environment"]["COMMUNIPUTE_INPUTS"] = INPUTS_MOUNT
        # One name per attempt: the engine refuses a second container for the same attempt.
        container = self.client.containers.create(name=self._name(spec, "run"), **kwargs)
        try:
            container.start()
        except BaseException:
            self._container_remove(container.id)
            raise
        deadline = time.monotonic() + spec.timeout_seconds
        container.reload()
        return Handle(
            job_id=spec.job_id,
            attempt=spec.attempt,
            ref=str(container.id),
            attempt_dir=prepared.attempt_dir,
            timeout_seconds=spec.timeout_seconds,
            memory_mb=spec.memory_mb,
            deadline=deadline,
            pid=int(container.attrs["State"].get("Pid") or 0),
        )

    def attach(self, job_id: int, attempt: int) -> Handle:
        """A handle on a run container that an earlier agent process started (after restart).
        The timeout still counts from the container's start. Raises LookupError if none."""
        found = [c for c in self._own(job_id, attempt) if c.role == "run"]
        if not found:
            raise LookupError(f"no run container for job {job_id} attempt {attempt}")
        attrs = self.client.api.inspect_container(found[0].container_id)
        labels = attrs["Config"]["Labels"]
        timeout = int(labels[hardening.LABEL_TIMEOUT])
        started = _parse_time(attrs["State"]["StartedAt"])
        remaining = started + timeout - time.time()
        handle = Handle(
            job_id=job_id,
            attempt=attempt,
            ref=str(attrs["Id"]),
            attempt_dir=attempt_dir_path(self.settings.work_root, job_id, attempt),
            timeout_seconds=timeout,
            memory_mb=int(labels[hardening.LABEL_MEMORY]),
            deadline=time.monotonic() + remaining,
            pid=int(attrs["State"].get("Pid") or 0),
        )
        # Exited while no agent watched: what it left is all there is, from the first sample.
        self._usage_at_exit(handle, attrs)
        return handle

    def logs(self, handle: Handle) -> Iterator[bytes]:
        """stdout and stderr as the engine recorded them, from the start, until the exit."""
        stream = self.client.api.logs(
            handle.ref, stdout=True, stderr=True, stream=True, follow=True
        )
        yield from rechunk(cast(Iterator[bytes], stream), self.settings.log_chunk_bytes)

    def wait(self, handle: Handle) -> Outcome:
        """Block until the attempt ends; kill it at its wall-clock deadline. The cgroup's final
        counters are read the moment the container's first process exits (``_exit_watch``),
        before the engine removes the cgroup, so the last partial second is not lost; then the
        container's own record is folded in (``_usage_at_exit``)."""
        watcher = self._exit_watch_start(handle)
        try:
            outcome = self._wait(handle)
        finally:
            if watcher is not None:
                watcher.join(EXIT_WATCH_JOIN_SECONDS)
        self._usage_at_exit(handle)
        return outcome

    def _wait(self, handle: Handle) -> Outcome:
        timed_out = False
        remaining = handle.deadline - time.monotonic()
        try:
            # A container found again after it exited on its own (the agent was down past its
            # deadline) ended as it ended: only a running one is past its timeout.
            if remaining <= 0 and self._is_running(handle.ref):
                raise requests.exceptions.ReadTimeout("deadline already passed")
            result = self.client.api.wait(handle.ref, timeout=remaining if remaining > 0 else 1.0)
        except _TIMEOUTS:
            if time.monotonic() < handle.deadline - 1:
                raise  # the engine went away; that is not the job's timeout
            timed_out = True
            self._kill_quietly(handle.ref)
            result = self.client.api.wait(handle.ref, timeout=60)
        state = self.client.api.inspect_container(handle.ref)["State"]
        exit_code = int(result.get("StatusCode", state.get("ExitCode", -1)))
        oom = bool(state.get("OOMKilled"))
        engine_error = str(state.get("Error") or (result.get("Error") or {}).get("Message") or "")
        if engine_error and handle.stop_status is None and not timed_out:
            return host_fault(HOST_LOST_REASON, engine_error)  # the engine's, not the script's
        outcome = attempt_outcome(handle, exit_code, timed_out=timed_out, oom=oom)
        if outcome.status == "failed" and not oom:
            full = quota.full_directory(handle.attempt_dir)
            if full is not None:
                return disk_full_outcome(full, self._disk_limit_mb(handle, full), exit_code)
        return outcome

    def _disk_limit_mb(self, handle: Handle, name: str) -> int:
        """The size of the attempt's quota'd directory ``name``, by its image."""
        try:
            return quota.image_path(handle.attempt_dir, name).stat().st_size // quota.MB
        except OSError:
            return 0

    def cancel(
        self,
        handle: Handle,
        grace_seconds: float,
        *,
        status: StopStatus = "cancelled",
        reason: str = "cancelled",
    ) -> None:
        """SIGTERM (tini passes it on to the script), then SIGKILL after the grace period."""
        handle.stop_status, handle.stop_reason = status, reason
        with contextlib.suppress(NotFound):
            self.client.api.stop(handle.ref, timeout=max(math.ceil(grace_seconds), 0))

    def usage(self, handle: Handle) -> UsageSample:
        """Counters from the container's cgroup; the last sample once the container is gone."""
        dirs = self._cgroup_dirs(handle)
        try:
            if dirs is not None:
                counters = cgroup.counters_read(dirs)
            else:
                counters = self._counters_from_stats(handle)
        except (OSError, ValueError, APIError):
            return handle.last_usage
        with self._usage_lock:
            peak = max(handle.peak_memory_bytes, counters.memory_current_bytes)
            peak = max(peak, counters.memory_peak_bytes or 0)
            handle.peak_memory_bytes = peak
            handle.last_usage = UsageSample(
                cpu_seconds=max(counters.cpu_usec / 1_000_000, handle.last_usage.cpu_seconds),
                memory_current_mb=counters.memory_current_bytes // cgroup.MB,
                memory_peak_mb=peak // cgroup.MB,
                wall_seconds=handle.last_usage.wall_seconds,
            )
            return handle.last_usage

    def _usage_at_exit(self, handle: Handle, attrs: dict[str, Any] | None = None) -> None:
        """Once the container has exited, fold in what it left: the time it ran (the engine's
        FinishedAt - StartedAt) and the CPU time its meter file says (agent/runtime/meter.py),
        clipped to the cores it was given x that time. The file is the only CPU record of a
        container that exited while no agent watched it (no cgroup left, no stats); where it
        says less than was sampled, or nothing usable, the samples stand. Nothing while it
        runs."""
        if attrs is None:
            try:
                attrs = self.client.api.inspect_container(handle.ref)
            except (DockerException, requests.exceptions.RequestException):
                return
        run_seconds = run_seconds_of(attrs.get("State") or {})
        if run_seconds is None:
            return
        nano_cpus = int((attrs.get("HostConfig") or {}).get("NanoCpus") or 0)
        cores = nano_cpus / 1_000_000_000 if nano_cpus > 0 else float(os.cpu_count() or 1)
        metered = meter_read(handle.attempt_dir / METER_DIR)
        with self._usage_lock:
            last = handle.last_usage
            cpu = last.cpu_seconds
            if metered is not None:
                cpu = max(cpu, meter_clip(metered, cores, run_seconds))
            handle.last_usage = replace(
                last, cpu_seconds=cpu, memory_current_mb=0, wall_seconds=run_seconds
            )

    def _exit_watch_start(self, handle: Handle) -> threading.Thread | None:
        """A thread that sleeps until the container's first process (``handle.pid``, tini)
        exits — a pidfd becomes readable then — and takes one last sample at once: the engine
        deletes the cgroup only after it heard of the exit. Nothing where pidfds or the cgroup
        are not to be had (another pid namespace, a remote engine): the last sample stays."""
        if not handle.pid or not hasattr(os, "pidfd_open") or self._cgroup_dirs(handle) is None:
            return None
        try:
            descriptor = os.pidfd_open(handle.pid)
        except OSError:
            return None  # already gone
        # The pid could have been reused before the pidfd was opened: it must still be in
        # this container's cgroup.
        now = cgroup.dirs_of_pid(handle.pid)
        if now is None or handle.ref not in str(now.memory):
            os.close(descriptor)
            return None

        def watch() -> None:
            try:
                poller = select.poll()
                poller.register(descriptor, select.POLLIN)
                poller.poll()
                self.usage(handle)
            except OSError:
                pass
            finally:
                os.close(descriptor)

        watcher = threading.Thread(target=watch, name=f"exit-{handle.ref[:12]}", daemon=True)
        watcher.start()
        return watcher

    def _is_running(self, container_id: str) -> bool:
        state = self.client.api.inspect_container(container_id).get("State") or {}
        return bool(state.get("Running"))

    def _cgroup_dirs(self, handle: Handle) -> cgroup.CgroupDirs | None:
        """Found once per container from its first process. A pid is reused once the
        container is gone, so only a cgroup whose path names the container is trusted."""
        if handle.ref not in self._cgroups:
            dirs = cgroup.dirs_of_pid(handle.pid) if handle.pid else None
            if dirs is not None and handle.ref not in str(dirs.memory):
                dirs = None
            self._cgroups[handle.ref] = dirs
        return self._cgroups[handle.ref]

    def _counters_from_stats(self, handle: Handle) -> cgroup.CgroupCounters:
        """Where the agent can't see the cgroup files (e.g. a remote engine): the stats API."""
        stats = self.client.api.stats(handle.ref, stream=False, one_shot=True)
        memory = stats.get("memory_stats") or {}
        cpu_ns = int(((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage", 0))
        if "usage" not in memory:
            raise ValueError("the container is not running")
        peak = memory.get("max_usage")
        return cgroup.CgroupCounters(
            cpu_usec=cpu_ns // 1000,
            memory_current_bytes=int(memory["usage"]),
            memory_peak_bytes=int(peak) if peak is not None else None,
        )

    def collect_outputs(self, handle: Handle) -> list[OutputFile]:
        return outputs_collect(
            handle.attempt_dir / "outputs",
            self.settings.outputs_max_bytes,
            self.settings.outputs_max_files,
        )

    def cleanup(self, handle: Handle) -> None:
        """Remove the container and the attempt directory (outputs included)."""
        self._container_remove(handle.ref)
        self._cgroups.pop(handle.ref, None)
        self._env_release(handle.job_id, handle.attempt)
        self._attempt_dir_remove(handle.attempt_dir)

    # --- reconciliation --------------------------------------------------------------------

    def list_own(self) -> list[OwnedContainer]:
        """This agent's containers (by its host id, install id and server labels), running or
        not; other agents' containers on the same engine are never listed."""
        return self._own(None, None)

    def kill(self, job_id: int, attempt: int) -> None:
        """Stop and remove every container of the attempt at once, and its directory."""
        self._env_release(job_id, attempt)
        for owned in self._own(job_id, attempt):
            self._container_remove(owned.container_id)
        self._attempt_dir_remove(attempt_dir_path(self.settings.work_root, job_id, attempt))

    def _own(self, job_id: int | None, attempt: int | None) -> list[OwnedContainer]:
        labels = hardening.owner_filters(self.settings)
        if job_id is not None and attempt is not None:
            labels += [f"{hardening.LABEL_JOB}={job_id}", f"{hardening.LABEL_ATTEMPT}={attempt}"]
        found = []
        for summary in self.client.api.containers(all=True, filters={"label": labels}):
            container_labels = summary.get("Labels") or {}
            try:
                owned = OwnedContainer(
                    job_id=int(container_labels[hardening.LABEL_JOB]),
                    attempt=int(container_labels[hardening.LABEL_ATTEMPT]),
                    container_id=str(summary["Id"]),
                    state=str(summary.get("State", "")),
                    role="install"
                    if container_labels.get(hardening.LABEL_ROLE) == "install"
                    else "run",
                )
            except (KeyError, ValueError):
                continue
            found.append(owned)
        return sorted(found)

    # --- helpers ---------------------------------------------------------------------------

    def _name(self, spec: JobSpec, role: str) -> str:
        return f"communipute-{spec.job_id}-{spec.attempt}-{role}-{self._marker_hash}"

    def _kill_quietly(self, container_id: str) -> None:
        with contextlib.suppress(APIError):  # already stopped or gone
            self.client.api.kill(container_id)

    def _container_remove(self, container_id: str) -> None:
        with contextlib.suppress(NotFound):
            self.client.api.remove_container(container_id, force=True)

    def _volume_remove(self, name: str) -> None:
        try:
            self.client.api.remove_volume(name)
        except APIError as exc:
            log.warning("could not remove volume %s: %s", name, exc)

    def _attempt_dir_remove(self, directory: Path) -> None:
        """An unprivileged agent can't delete what the sandbox user wrote in its own
        directories; a throwaway container with only CAP_DAC_OVERRIDE does it instead."""
        quota.mounts_release(directory)  # the disk quotas first: the helper only sees files
        if tree_remove(directory) or not directory.exists():
            return
        self.client.containers.run(**hardening.cleanup_kwargs(self.settings, directory))
        tree_remove(directory)


def _free_disk_mb(directory: Path) -> int | None:
    """Free disk where ``directory`` is (or its nearest existing parent); None if unknown."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free // (1024 * 1024)
            except OSError:
                return None
    return None


def run_seconds_of(state: dict[str, Any]) -> float | None:
    """How long a container that has exited ran, by the engine's record (``State`` of
    ``docker inspect``: FinishedAt - StartedAt); None while it runs or when it never did."""
    started, finished = str(state.get("StartedAt") or ""), str(state.get("FinishedAt") or "")
    if state.get("Running") or not _is_time(started) or not _is_time(finished):
        return None
    return max(0.0, _parse_time(finished) - _parse_time(started))


def _requirement_name(line: str) -> str:
    """The project name of a validated requirement line (types.requirement_validate)."""
    match = _REQUIREMENT_NAME.match(line.strip())
    return match.group(0) if match else line


def _project_name(name: str) -> str:
    """A project name as pip compares them (PEP 503): case, '-', '_' and '.' don't matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _created_time(value: str) -> float:
    """A volume's CreatedAt (RFC 3339 with an offset) as Unix time; 0 where unreadable."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _is_time(value: str) -> bool:
    """A timestamp the engine set (it writes year 1 for "never")."""
    return bool(value) and not value.startswith("0001-")


def _parse_time(value: str) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds; Python parses microseconds."""
    head, _, fraction = value.rstrip("Z").partition(".")
    parsed = datetime.fromisoformat(head + "+00:00").timestamp()
    return parsed + (float(f"0.{fraction[:6]}") if fraction else 0.0)
