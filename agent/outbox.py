"""Agent messages that must reach the server: kept until acknowledged, resent on reconnect.

Every ``job.*`` message goes through the outbox. The server acknowledges ``job.accept``,
``job.reject``, ``job.started`` and ``job.finished`` with ``ack {ack_id}``, log chunks with
``log.ack`` (every byte before ``offset``) and usage reports with ``usage.ack`` (every ``seq``
up to it). Because the server treats each message as idempotent (keyed by job, attempt and
offset or seq), resending after a reconnect is always safe. An ``error`` naming a message is
final for it, except ``internal_error`` (the server failed; the message stays to be resent).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from agent.protocol import new_id

logger = logging.getLogger(__name__)

RELIABLE_TYPES = {"job.accept", "job.reject", "job.started", "job.log", "job.usage", "job.finished"}
RETRYABLE_ERRORS = {"internal_error"}
WARN_AT = 10_000


@dataclass(frozen=True)
class Pending:
    id: str
    type: str
    data: Any


class Outbox:
    def __init__(self) -> None:
        self._pending: OrderedDict[str, Pending] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, message_type: str, data: Any, message_id: str | None = None) -> Pending:
        if message_type == "job.usage":
            # Usage counters are cumulative: a newer report supersedes unacknowledged older ones.
            self._remove(
                lambda p: p.type == "job.usage" and _same_attempt(p.data, data),
            )
        entry = Pending(message_id or new_id(), message_type, data)
        self._pending[entry.id] = entry
        if len(self._pending) == WARN_AT:
            logger.warning("%d messages wait for the server's acknowledgement", WARN_AT)
        return entry

    def pending(self) -> list[Pending]:
        return list(self._pending.values())

    def ack(self, ack_id: str) -> bool:
        return self._pending.pop(ack_id, None) is not None

    def log_ack(self, job_id: int, attempt: int, offset: int) -> int:
        def covered(p: Pending) -> bool:
            if p.type != "job.log" or not _is_attempt(p.data, job_id, attempt):
                return False
            return int(p.data["offset"]) + len(str(p.data["data"]).encode()) <= offset

        return self._remove(covered)

    def usage_ack(self, job_id: int, attempt: int, seq: int) -> int:
        return self._remove(
            lambda p: (
                p.type == "job.usage"
                and _is_attempt(p.data, job_id, attempt)
                and int(p.data["seq"]) <= seq
            )
        )

    def refuse(self, ref_id: str, code: str) -> Pending | None:
        """The server refused message ``ref_id`` with an error: drop it unless retryable."""
        if code in RETRYABLE_ERRORS:
            return None
        return self._pending.pop(ref_id, None)

    def _remove(self, matches: Any) -> int:
        doomed = [key for key, entry in self._pending.items() if matches(entry)]
        for key in doomed:
            del self._pending[key]
        return len(doomed)


def _is_attempt(data: Any, job_id: int, attempt: int) -> bool:
    return bool(data.get("job_id") == job_id and data.get("attempt") == attempt)


def _same_attempt(left: Any, right: Any) -> bool:
    return _is_attempt(left, right.get("job_id"), right.get("attempt"))
