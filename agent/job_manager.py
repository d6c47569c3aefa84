"""The seam between the agent's connection and whatever runs jobs.

The client (agent/client.py) owns the socket, the outbox and the availability policy; a
``JobManager`` owns jobs. The jobs integration provides one backed by ``agent.runtime`` and
names its factory in the ``job_manager`` setting ("package.module:factory", called with the
``AgentConfig``). Without one, the agent runs no jobs and says so to every offer.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from agent.config import AgentConfig, ConfigError
from agent.protocol import JobCancel, JobOffer, RunningJobRef

NO_RUNTIME_REASON = "no runtime configured"


class AgentLink(Protocol):
    """What a job manager may do with the connection."""

    def send(self, message_type: str, data: Any) -> str:
        """Queue an agent message; job.* messages stay in the outbox until acknowledged and
        are resent after a reconnect. Returns the envelope id."""
        ...


class JobManager(Protocol):
    async def start(self, link: AgentLink) -> None:
        """Called once before the first connection (find jobs left by an earlier run here)."""
        ...

    def running_jobs(self) -> list[RunningJobRef]:
        """The attempts running now: reported in hello and every heartbeat."""
        ...

    async def on_offer(self, offer: JobOffer) -> None:
        """Accept (job.accept, then run it) or reject (job.reject) the offer via the link.

        The client has already rejected offers while draining, unavailable or at capacity.
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

    async def on_offer(self, offer: JobOffer) -> None:
        assert self._link is not None
        self._link.send(
            "job.reject",
            {"job_id": offer["job_id"], "attempt": offer["attempt"], "reason": NO_RUNTIME_REASON},
        )

    async def on_cancel(self, cancel: JobCancel) -> None:
        return None

    async def on_resume(self, keep: list[RunningJobRef], kill: list[RunningJobRef]) -> None:
        return None

    async def on_ack(self, message_type: str, data: Any) -> None:
        return None

    async def stop(self) -> None:
        return None


def job_manager_build(config: AgentConfig) -> JobManager:
    """The job manager the config names, or the rejecting one."""
    if not config.job_manager:
        return RejectingJobManager()
    module_name, _, attribute = config.job_manager.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"job_manager {config.job_manager!r} cannot be loaded: {exc}") from None
    manager: JobManager = factory(config)
    return manager
