"""The in-process channel layer of the embedded default (no Redis).

Channels' ``InMemoryChannelLayer`` keeps its queues in one event loop's ``asyncio.Queue``s: a
message sent from another thread's loop wakes the receiving socket unsafely, or late, or never.
The embedded demo runs a Celery worker in daphne's process (``demo_web``: an in-process layer
reaches only its own process), and a task there rings an agent's doorbell through
``async_to_sync``, which runs in a loop of its own. So this layer remembers the loop its sockets
receive on and runs every send made from another loop on that one.

It is still one process's layer: with several daphne processes, or workers in other processes,
use Redis (``REDIS_URL``). docs/operations.md says which processes the embedded default runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from channels.layers import InMemoryChannelLayer

T = TypeVar("T")


class InProcessChannelLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """``InMemoryChannelLayer`` that is safe to send to from any thread of the process."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._home: asyncio.AbstractEventLoop | None = None

    async def _at_home(self, call: Callable[[], Awaitable[T]]) -> T:
        home, here = self._home, asyncio.get_running_loop()
        if home is None or home is here or home.is_closed() or not home.is_running():
            return await call()

        async def run() -> T:
            return await call()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), home))

    async def receive(self, channel: str) -> dict[str, Any]:
        self._home = asyncio.get_running_loop()
        message: dict[str, Any] = await super().receive(channel)
        return message

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._at_home(lambda: super(InProcessChannelLayer, self).send(channel, message))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self._at_home(lambda: super(InProcessChannelLayer, self).group_send(group, message))

    async def group_add(self, group: str, channel: str) -> None:
        await self._at_home(lambda: super(InProcessChannelLayer, self).group_add(group, channel))

    async def group_discard(self, group: str, channel: str) -> None:
        await self._at_home(
            lambda: super(InProcessChannelLayer, self).group_discard(group, channel)
        )
