"""The agent pings the server only when the server has gone quiet (agent/keepalive.py), against
real websockets servers on loopback: one that pings like daphne, one that never pings, one
that stops answering."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
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


@contextlib.asynccontextmanager
async def _linked(
    server_pings: float | None,
) -> AsyncIterator[tuple[type[ObservedConnection], QuietClientConnection]]:
    """A server on loopback (pinging every ``server_pings`` seconds, or never) holding one
    connection from a quiet-keepalive client: the server's connection class and the client."""
    connection = observed()

    async def hold(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(
        hold, "127.0.0.1", 0, ping_interval=server_pings, create_connection=connection
    ) as server:
        client = await connect(
            f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/",
            create_connection=QuietClientConnection,
            ping_interval=SILENCE,
            ping_timeout=PONG_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
        )
        assert isinstance(client, QuietClientConnection)
        yield connection, client


async def test_a_client_pinged_by_its_server_sends_no_pings_of_its_own():
    async with _linked(server_pings=SILENCE / 3) as (connection, ws):
        await asyncio.sleep(SILENCE * 4)
        assert ws.state.name == "OPEN"
        assert ws.silent_for() < SILENCE
        await ws.close()
    assert connection.pings == 0


async def test_a_client_whose_server_is_quiet_pings_it_and_stays_connected():
    async with _linked(server_pings=None) as (connection, ws):
        await asyncio.sleep(SILENCE * 4)
        assert ws.state.name == "OPEN"  # each ping was answered
        await ws.close()
    # one ping per silence: the pong is something received, so the next waits a whole period
    assert 2 <= connection.pings <= 5


async def test_a_client_whose_server_stopped_answering_drops_the_connection():
    async with _linked(server_pings=None) as (connection, ws):
        connection.deaf = True
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), SILENCE + PONG_TIMEOUT + CLOSE_TIMEOUT + 5)
        elapsed = asyncio.get_running_loop().time() - started
    assert closed.value.sent is not None
    assert closed.value.sent.code == 1011
    assert closed.value.sent.reason == "keepalive ping timeout"
    assert elapsed >= SILENCE + PONG_TIMEOUT - 0.1  # not before the pong was due
