"""The agent's websocket keepalive: ping the server only when the server has gone quiet.

websockets' own keepalive pings every ``ping_interval`` whatever the peer sends, and the server
(daphne, ``--ping-interval``) pings every socket that sent it no message for its own interval,
so an idle agent's socket carried two ping exchanges per interval: one to tell the agent the
server is there, one to tell the server the agent is. The server's alone tells both: the agent
answers it (which is what the server needs) and, by receiving it, knows the server is alive.
So ``QuietClientConnection`` pings only once nothing at all — a message, a ping, a pong — has
come from the server for ``ping_interval`` seconds, and fails the connection like websockets
does when that ping's pong does not come within ``ping_timeout``. Against a server that pings
(every daphne does: 20 s by default) it never pings; against one that stopped answering, it
finds out within ``ping_interval + ping_timeout`` seconds.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import ClientConnection
from websockets.frames import CloseCode


class QuietClientConnection(ClientConnection):
    """A client connection whose keepalive pings only a silent peer (``connect(...,
    create_connection=QuietClientConnection)``)."""

    received_at: float = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.received_at = self.loop.time()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.received_at = self.loop.time()
        super().data_received(data)

    def silent_for(self) -> float:
        """Seconds since anything last came from the peer."""
        return self.loop.time() - self.received_at

    async def keepalive(self) -> None:
        assert self.ping_interval is not None
        try:
            while True:
                silent = self.silent_for()
                if silent < self.ping_interval:
                    await asyncio.sleep(self.ping_interval - silent)
                    continue
                pong_received = await self.ping()
                if self.ping_timeout is None:
                    await pong_received
                    continue
                try:
                    async with asyncio.timeout(self.ping_timeout):
                        # connection_lost cancels keepalive: CancelledError, not ConnectionClosed.
                        await pong_received
                except TimeoutError:
                    async with self.send_context():
                        self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                    raise AssertionError(
                        "send_context() waits for connection_lost(), which cancels keepalive()"
                    ) from None
        except Exception:
            self.logger.error("keepalive ping failed", exc_info=True)
