"""The Docker runtime of an agent whose engine did not answer when it started.

A host that boots the agent before ``dockerd``, or whose engine is down for a while, should
not need its agent restarted: ``DockerRuntimeLater`` is a ``Runtime`` that connects on the
first ``readiness_check`` that finds the engine answering and from then on is that
``DockerRuntime``. Until then it is not ready ("the Docker engine does not answer: …"), so the
job manager rejects every offer ``host_fault`` and never calls the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import requests
from docker.errors import DockerException

from agent.runtime.docker_runtime import DockerRuntime
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
)

ENGINE_DOWN = "the Docker engine does not answer"


class DockerRuntimeLater:
    isolation: Isolation = "docker"

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self._runtime: DockerRuntime | None = None
        self._lock = threading.Lock()

    def connect(self) -> DockerRuntime:
        """The DockerRuntime, made now if the engine answers; raises DockerException if not."""
        with self._lock:
            if self._runtime is None:
                try:
                    runtime = DockerRuntime(self.settings)
                    runtime.client.ping()
                except requests.exceptions.RequestException as exc:
                    raise DockerException(str(exc)) from exc
                self._runtime = runtime
            return self._runtime

    @property
    def runtime(self) -> DockerRuntime:
        if self._runtime is None:
            raise DockerException(ENGINE_DOWN)
        return self._runtime

    def readiness_check(self) -> str:
        try:
            runtime = self.connect()
        except DockerException as exc:
            return f"{ENGINE_DOWN}: {exc}"
        return runtime.readiness_check()

    def disk_quota_active(self) -> bool:
        """Not before the engine answers (no job runs before then either)."""
        try:
            return self.connect().disk_quota_active()
        except DockerException:
            return False

    def list_own(self) -> list[OwnedContainer]:
        try:
            return self.connect().list_own()
        except DockerException:
            return []  # no engine: none of its containers can be running

    # The rest is only called once readiness_check connected (the manager takes no job before).

    def prepare(self, spec: JobSpec) -> Prepared:
        return self.runtime.prepare(spec)

    def start(self, prepared: Prepared) -> Handle:
        return self.runtime.start(prepared)

    def attach(self, job_id: int, attempt: int) -> Handle:
        return self.runtime.attach(job_id, attempt)

    def logs(self, handle: Handle) -> Iterator[bytes]:
        return self.runtime.logs(handle)

    def wait(self, handle: Handle) -> Outcome:
        return self.runtime.wait(handle)

    def cancel(
        self,
        handle: Handle,
        grace_seconds: float,
        *,
        status: StopStatus = "cancelled",
        reason: str = "cancelled",
    ) -> None:
        self.runtime.cancel(handle, grace_seconds, status=status, reason=reason)

    def usage(self, handle: Handle) -> UsageSample:
        return self.runtime.usage(handle)

    def collect_outputs(self, handle: Handle) -> list[OutputFile]:
        return self.runtime.collect_outputs(handle)

    def cleanup(self, handle: Handle) -> None:
        self.runtime.cleanup(handle)

    def kill(self, job_id: int, attempt: int) -> None:
        self.runtime.kill(job_id, attempt)
