"""The in-process channel layer: a doorbell rung from another thread's event loop (the demo's
in-process Celery worker, through async_to_sync) reaches a socket waiting on daphne's loop."""

from __future__ import annotations

import asyncio
import threading
import time

from channels.layers import InMemoryChannelLayer

from config.channel_layers import InProcessChannelLayer

MESSAGE = {"type": "agent.push", "text": "ring"}


async def _ring_from_another_thread(layer: InMemoryChannelLayer) -> tuple[dict[str, str], float]:
    channel = await layer.new_channel()
    await layer.group_add("host.1", channel)
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)  # the receiver now waits on this loop
    started = time.monotonic()
    worker = threading.Thread(target=lambda: asyncio.run(layer.group_send("host.1", MESSAGE)))
    worker.start()
    message = await asyncio.wait_for(receiving, 3)
    elapsed = time.monotonic() - started
    await asyncio.to_thread(worker.join)  # the send finishes on this loop: don't block it
    return message, elapsed


async def test_a_send_from_another_threads_loop_wakes_the_receiver_at_once() -> None:
    # when
    message, elapsed = await _ring_from_another_thread(InProcessChannelLayer())

    # then
    assert message == MESSAGE
    assert elapsed < 1


async def test_sends_on_the_receivers_own_loop_work_as_before() -> None:
    # given
    layer = InProcessChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("host.2", channel)

    # when
    await layer.group_send("host.2", MESSAGE)
    await layer.send(channel, {"type": "agent.close", "code": 4000})

    # then
    assert await layer.receive(channel) == MESSAGE
    assert await layer.receive(channel) == {"type": "agent.close", "code": 4000}
