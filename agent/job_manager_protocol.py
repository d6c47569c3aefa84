"""The seam between the agent's connection and whatever runs jobs.

The client (agent/client.py) owns the socket, the outbox and the availability policy; a
``JobManager`` owns jobs. ``agent.jobrunner`` provides the one backed by ``agent.runtime``;
the ``job_manager`` setting names its factory ("auto", "docker", "process" or any
"package.module:factory", called with the ``AgentConfig``). Without a usable runtime the agent
runs no jobs and says so to every offer.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal, Protocol

from agent.config import AgentConfig, ConfigError
from agent.protocol import JobCancel, JobOffer, JobReject, Readiness, RunningJobRef

NO_RUNTIME_REASON = "no runtime configured"
NO_RUNTIME_READINESS = "no job runtime: Docker did not answer when the agent started"


RejectCode = Literal["busy", "refused", "host_fault"]


def reject(offer: JobOffer, reason: str, code: RejectCode = "refused") -> JobReject:
    """A job.reject of the offer: ``busy`` (no room now; never held against the job),
    ``refused`` (the host's policy or a misfit) or ``host_fault`` (the host is not ready)."""
    return {
        "job_id": offer["job_id"],
        "attempt": offer["attempt"],
        "reason": reason,
        "code": code,
    }


class AgentLink(Protocol):
    """What a job manager may do with the connection."""

    def send(self, message_type: str, data: Any) -> str:
        """Queue an agent message; job.* messages stay in the outbox until acknowledged and
        are resent after a reconnect. Returns the envelope id."""
        ...

    @property
    def is_connected(self) -> bool:
        """Welcomed on an open socket: what is sent now goes out now."""
        ...

    @property
    def usage_report_seconds(self) -> float:
        """How often to send job.usage (the server's welcome says)."""
        ...


class JobManager(Protocol):
    async def start(self, link: AgentLink) -> None:
        """Called once before the first connection (find jobs left by an earlier run here)."""
        ...

    def running_jobs(self) -> list[RunningJobRef]:
        """The attempts held now (from accept until the server acknowledged their finish):
        reported in hello and every heartbeat, which renews their leases."""
        ...

    def slots_used(self) -> int:
        """The attempts that take a slot: a finished one that waits for the server's
        acknowledgement no longer does."""
        ...

    def slots(self) -> int:
        """How many jobs this host runs side by side (hello and heartbeat ``slots``)."""
        ...

    def readiness(self) -> Readiness:
        """What the last self-check found (hello and every heartbeat)."""
        ...

    def host_disk(self) -> tuple[bool, int] | None:
        """(disk quotas enforced, the most disk in MB one job may ask for) for hello
        ``specs.disk_quota`` and ``specs.job_disk_mb``; None: say neither. Blocking."""
        ...

    async def on_offer(self, offer: JobOffer) -> None:
        """Accept (job.accept, then run it) or reject (job.reject) the offer via the link.

        The client has already rejected offers while draining or unavailable; the manager
        rejects what doesn't fit (``busy``: not now; ``refused``: never here) and everything
        while not ready (``host_fault``).
        """
        ...

    async def on_cancel(self, cancel: JobCancel) -> None: ...

    async def on_resume(self, keep: list[RunningJobRef], kill: list[RunningJobRef]) -> None:
        """The server's answer to hello: keep these running, kill those."""
        ...

    async def on_ack(self, message_type: str, data: Any) -> None:
        """``ack``, ``log.ack`` or ``usage.ack`` (whose ``stop`` means: budget exhausted)."""
        ...

    async def stop(self) -> None:
        """The agent is exiting; running jobs keep running and are found again on restart."""
        ...


class RejectingJobManager:
    """The job manager of an agent without a runtime: it runs nothing and rejects every offer."""

    def __init__(self) -> None:
        self._link: AgentLink | None = None

    async def start(self, link: AgentLink) -> None:
        self._link = link

    def running_jobs(self) -> list[RunningJobRef]:
        return []

    def slots_used(self) -> int:
        return 0

    def slots(self) -> int:
        return 1

    def readiness(self) -> Readiness:
        return Readiness(ready=False, reason=NO_RUNTIME_READINESS, isolation="none")

    def host_disk(self) -> tuple[bool, int] | None:
        return None

    async def on_offer(self, offer: JobOffer) -> None:
        assert self._link is not None
        self._link.send("job.reject", reject(offer, NO_RUNTIME_REASON, "host_fault"))

    async def on_cancel(self, cancel: JobCancel) -> None:
        return None

    async def on_resume(self, keep: list[RunningJobRef], kill: list[RunningJobRef]) -> None:
        return None

    async def on_ack(self, message_type: str, data: Any) -> None:
        return None

    async def stop(self) -> None:
        return None


# Short names of the ``job_manager`` setting.
JOB_MANAGERS = {
    "auto": "agent.jobrunner:auto_job_manager",
    "docker": "agent.jobrunner:docker_job_manager",
    "process": "agent.jobrunner:process_job_manager",
}


def job_manager_build(config: AgentConfig) -> JobManager:
    """The job manager the config names ("none" or empty: the rejecting one)."""
    if config.job_manager in ("", "none"):
        return RejectingJobManager()
    target = JOB_MANAGERS.get(config.job_manager, config.job_manager)
    module_name, _, attribute = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"job_manager {config.job_manager!r} cannot be loaded: {exc}") from None
    manager: JobManager = factory(config)
    return manager
