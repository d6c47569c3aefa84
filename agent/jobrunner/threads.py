"""Blocking runtime calls in daemon threads.

``asyncio.to_thread`` uses the loop's default executor, whose threads ``asyncio.run`` waits
for at exit. A log stream or a ``wait`` on a container that keeps running never returns, and
an exiting agent must leave running containers alone, so those calls get their own daemon
threads: the process can exit while they block.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def in_daemon_thread(function: Callable[..., T], *args: Any, name: str = "") -> T:
    """Run ``function(*args)`` in a new daemon thread and await its result."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, result, error)

    threading.Thread(
        target=run, name=name or getattr(function, "__name__", ""), daemon=True
    ).start()
    return await future
