"""The agent pings the server only when the server has gone quiet (agent/keepalive.py), against
real websockets servers on loopback: one that pings like daphne, one that never pings, one
that stops answering."""

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from agent.keepalive import QuietClientConnection

SILENCE = 0.6  # the client's ping_interval: ping once the server said nothing this long
PONG_TIMEOUT = 0.5
CLOSE_TIMEOUT = 0.5  # a deaf server sends no close frame back: the socket is aborted after this


class ObservedConnection(ServerConnection):
    """Counts the pings the client sends; once ``deaf``, drops everything the client sends (a
    server whose process stopped: nothing is answered, not even pings)."""

    pings = 0
    deaf = False

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            type(self).pings += 1
        super().process_event(event)

    def data_received(self, data: bytes) -> None:
        if not type(self).deaf:
            super().data_received(data)


def observed() -> type[ObservedConnection]:
    return type("Observed", (ObservedConnection,), {"pings": 0, "deaf": False})


async def _hold(ws: ServerConnection) -> None:
    await ws.wait_closed()


async def _client(port: int) -> Any:
    return await connect(
        f"ws://127.0.0.1:{port}/",
        create_connection=QuietClientConnection,
        ping_interval=SILENCE,
        ping_timeout=PONG_TIMEOUT,
        close_timeout=CLOSE_TIMEOUT,
    )


@pytest.mark.asyncio
async def test_a_client_pinged_by_its_server_sends_no_pings_of_its_own():
    connection = observed()
    async with serve(
        _hold, "127.0.0.1", 0, ping_interval=SILENCE / 3, create_connection=connection
    ) as server:
        ws = await _client(server.sockets[0].getsockname()[1])
        await asyncio.sleep(SILENCE * 4)
        assert ws.state.name == "OPEN"
        assert ws.silent_for() < SILENCE
        await ws.close()
    assert connection.pings == 0


@pytest.mark.asyncio
async def test_a_client_whose_server_is_quiet_pings_it_and_stays_connected():
    connection = observed()
    async with serve(
        _hold, "127.0.0.1", 0, ping_interval=None, create_connection=connection
    ) as server:
        ws = await _client(server.sockets[0].getsockname()[1])
        await asyncio.sleep(SILENCE * 4)
        assert ws.state.name == "OPEN"  # each ping was answered
        await ws.close()
    # one ping per silence: the pong is something received, so the next waits a whole period
    assert 2 <= connection.pings <= 5


@pytest.mark.asyncio
async def test_a_client_whose_server_stopped_answering_drops_the_connection():
    connection = observed()
    async with serve(
        _hold, "127.0.0.1", 0, ping_interval=None, create_connection=connection
    ) as server:
        ws = await _client(server.sockets[0].getsockname()[1])
        connection.deaf = True
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), SILENCE + PONG_TIMEOUT + CLOSE_TIMEOUT + 5)
        elapsed = asyncio.get_running_loop().time() - started
    assert closed.value.sent is not None
    assert closed.value.sent.code == 1011
    assert closed.value.sent.reason == "keepalive ping timeout"
    assert elapsed >= SILENCE + PONG_TIMEOUT - 0.1  # not before the pong was due
