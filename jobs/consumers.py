"""The owner's live view of a job: /ws/jobs/{id}/ (status changes, log chunks, usage, cost).

Read-only for the browser. The first message is the job's current status; later ones are
pushed by services after commit through the group ``job.{id}``. Pushes can be dropped (the
channel layer is at-most-once), so a client that needs everything reads the logs over HTTP
from its last offset.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.models import PoolLogs
from jobs.events import group_group, job_group
from jobs.group_selectors import group_event
from jobs.models import Job, JobGroup
from jobs.services.logs import log_kept_elsewhere
from jobs.states import job_status_event

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404


def _snapshot(user: Any, job_id: int) -> list[dict[str, Any]] | None:
    """The job's status now, and for a job whose pool keeps its log off the server a
    ``log.unavailable`` saying so (no ``job.log`` will ever come)."""
    job = Job.objects.filter(pk=job_id, owner=user).select_related("pool").first()
    if job is None:
        return None
    events = [job_status_event(job)]
    kept = log_kept_elsewhere(job)
    if kept:
        events.append(
            {
                "type": "log.unavailable",
                "job_id": job.pk,
                "logs": kept,
                "message": "this job's pool keeps its jobs' logs on its own store"
                if kept == PoolLogs.STORE
                else "this job's pool keeps no log of its jobs (redacted)",
            }
        )
    return events


class JobConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        snapshot = await database_sync_to_async(_snapshot)(user, job_id)
        if snapshot is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = job_group(job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        for event in snapshot:
            await self.send_json(event)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The socket is read-only: browser messages are ignored."""

    async def job_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])


def _group_snapshot(user: Any, group_id: int) -> dict[str, Any] | None:
    if not JobGroup.objects.filter(pk=group_id, owner=user).exists():
        return None
    return group_event(group_id)


class JobGroupConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """The owner's live view of a job group: /ws/job-groups/{id}/. The first message is its
    progress now (``group.progress``: status, counts by task status, cost so far); the same
    is pushed after every task's settlement and at the group's end, through the channel
    group ``job-group.{id}``. Read-only; pushes may be dropped (read the group over HTTP)."""

    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        group_id = int(self.scope["url_route"]["kwargs"]["group_id"])
        snapshot = await database_sync_to_async(_group_snapshot)(user, group_id)
        if snapshot is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = group_group(group_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(snapshot)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The socket is read-only: browser messages are ignored."""

    async def group_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])
