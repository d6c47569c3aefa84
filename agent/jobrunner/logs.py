"""An attempt's combined stdout/stderr as ``job.log`` chunks with byte offsets.

Offsets count bytes of the UTF-8 text the agent sends (docs/protocol.md). The runtime's raw
bytes go through one incremental UTF-8 decoder (undecodable bytes become U+FFFD), so reading
the same log again from its start — as a restarted agent does — yields the same text and the
same offsets. The server acknowledges the contiguous end it holds (``log.ack``); what it has
not acknowledged is kept here (bounded by the window, since the reader waits when it is full)
and sent again from the acknowledged offset when acknowledgements stop coming.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from agent.protocol import MAX_LOG_CHUNK_BYTES, MAX_MESSAGE_BYTES

# A chunk's text as JSON (escapes included) stays well inside one message: control
# characters escape to six bytes each, so 64 KiB of them would not fit.
JSON_CHUNK_MAX_CHARS = MAX_MESSAGE_BYTES * 3 // 4
DEFAULT_WINDOW_BYTES = 1024 * 1024


def _boundary_before(data: bytes, end: int) -> int:
    """The largest character boundary <= ``end`` in UTF-8 ``data``."""
    while 0 < end < len(data) and data[end] & 0xC0 == 0x80:
        end -= 1
    return end


def _chunk_end(data: bytes, max_bytes: int) -> int:
    """Where the first piece of at most ``max_bytes`` ends (at least one whole character)."""
    end = _boundary_before(data, min(max_bytes, len(data)))
    if end == 0 and data:
        end = 1
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end += 1
    return end


def _json_fit(text: str) -> list[str]:
    if len(text) <= 1 or len(json.dumps(text)) <= JSON_CHUNK_MAX_CHARS:
        return [text]
    half = len(text) // 2
    return _json_fit(text[:half]) + _json_fit(text[half:])


def text_split(data: bytes, max_bytes: int) -> list[str]:
    """UTF-8 ``data`` as text pieces of at most ``max_bytes`` bytes (a character is never cut;
    one longer than ``max_bytes`` travels alone), each fitting one message as JSON."""
    pieces: list[str] = []
    start = 0
    while start < len(data):
        end = start + _chunk_end(data[start:], max_bytes)
        pieces.extend(_json_fit(data[start:end].decode("utf-8", errors="replace")))
        start = end
    return pieces


class LogOutbound:
    """The sending side of one attempt's log: what is pending, in flight and acknowledged.

    ``probing`` (after re-attaching to a container) lets one chunk out until the server's
    first acknowledgement says how much it already holds; everything before that is skipped.
    """

    def __init__(
        self,
        *,
        chunk_bytes: int = MAX_LOG_CHUNK_BYTES,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        probing: bool = False,
    ) -> None:
        self.chunk_bytes = chunk_bytes
        self.window_bytes = window_bytes
        self.probing = probing
        self.acked = 0  # the server holds every byte before this offset
        self.sent_end = 0  # every byte before this offset was sent at least once
        self.produced = 0  # every byte before this offset came from the runtime
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = bytearray()  # [produced - len(pending), produced): not sent yet
        self._unacked = bytearray()  # [acked, sent_end): sent, not acknowledged

    # --- from the runtime -------------------------------------------------------------------

    def feed(self, raw: bytes) -> None:
        self._take(self._decoder.decode(raw))

    def feed_end(self) -> None:
        self._take(self._decoder.decode(b"", final=True))

    def _take(self, text: str) -> None:
        data = text.encode("utf-8")
        self._pending += data
        self.produced += len(data)

    # --- to the server ----------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return self.sent_end - self.acked

    def has_room(self) -> bool:
        if self.probing:
            return self.sent_end <= self.acked
        return self.in_flight < self.window_bytes

    def is_blocked(self, *, flush: bool) -> bool:
        """Something is ready to go but the window holds it back."""
        ready = len(self._pending) >= self.chunk_bytes or (flush and len(self._pending) > 0)
        return ready and not self.has_room()

    def take_ready(self, *, flush: bool) -> list[tuple[int, str]]:
        """(offset, text) chunks to send now: whole chunks (all that is pending on ``flush``)
        while the window has room; bytes the server already holds are dropped."""
        chunks: list[tuple[int, str]] = []
        self._skip_acknowledged()
        while self._pending and self.has_room():
            if len(self._pending) < self.chunk_bytes and not flush:
                break
            end = _chunk_end(bytes(self._pending), self.chunk_bytes)
            data = bytes(self._pending[:end])
            del self._pending[:end]
            offset = self.sent_end
            self._unacked += data
            self.sent_end += len(data)
            for text in text_split(data, self.chunk_bytes):
                chunks.append((offset, text))
                offset += len(text.encode("utf-8"))
        return chunks

    def _skip_acknowledged(self) -> None:
        start = self.produced - len(self._pending)
        if start < self.acked:
            del self._pending[: min(self.acked - start, len(self._pending))]

    def ack(self, offset: int) -> bool:
        """The server holds [0, offset); True when that is news."""
        self.probing = False
        if offset <= self.acked:
            return False
        covered = min(offset, self.sent_end) - self.acked
        if covered > 0:
            del self._unacked[:covered]
        self.acked = offset
        if self.sent_end < offset:  # it held more than this run sent (a restarted agent)
            self._unacked.clear()
            self.sent_end = offset
        self._skip_acknowledged()
        return True

    def unacknowledged(self) -> list[tuple[int, str]]:
        """What was sent and not acknowledged, as chunks to send again."""
        chunks = []
        offset = self.acked
        for text in text_split(bytes(self._unacked), self.chunk_bytes):
            chunks.append((offset, text))
            offset += len(text.encode("utf-8"))
        return chunks


class LogKept:
    """The log of a job whose pool keeps it off the server (docs/pools.md): "store" spools
    the text to a private temporary file for the pool's store, "redacted" only counts it.
    ``produced`` counts bytes of the same UTF-8 text as ``LogOutbound`` would have sent, so
    job.finished's ``log_bytes`` means the same for every job."""

    def __init__(self, mode: str, folder: Path | None = None) -> None:
        self.mode = mode
        self.produced = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.path: Path | None = None
        self._file: BinaryIO | None = None
        if mode == "store":
            descriptor, name = tempfile.mkstemp(prefix="communipute-log-", dir=folder)
            self.path = Path(name)
            self._file = os.fdopen(descriptor, "wb")

    def feed(self, raw: bytes) -> None:
        self._take(self._decoder.decode(raw))

    def feed_end(self) -> None:
        self._take(self._decoder.decode(b"", final=True))
        if self._file is not None:
            self._file.flush()

    def _take(self, text: str) -> None:
        data = text.encode("utf-8")
        self.produced += len(data)
        if self._file is not None:
            self._file.write(data)

    def close(self) -> None:
        """Remove the spool (after it went to the pool's store, or when it could not)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
