"""Job logs: byte-offset chunks from the agent, stored once, readable from any offset.

Offsets count bytes of the UTF-8 text the agent sends. The server stores only a contiguous
prefix: a resent or overlapping chunk adds just its new bytes, a chunk past a gap is dropped
(the ack names the offset the agent must resend from). Each attempt keeps the last
JOB_LOG_MAX_BYTES bytes; older chunks are dropped and readers are told so.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F

from jobs import events
from jobs.models import Job, JobAttempt, JobLogChunk
from jobs.services.outputs import upload_window_check

MAX_READ_BYTES = 1024 * 1024


def log_append(attempt_id: int, offset: int, text: str) -> int:
    """Store bytes ``[offset, offset + len)`` of the attempt's log; return the contiguous end.

    Locks the attempt row so appends of one attempt are serialised. Raises ``Conflict``
    (``upload_window_closed``) for an attempt that finished more than JOB_LATE_UPLOAD_SECONDS
    ago: its log is final and nothing is stored.
    """
    data = text.encode("utf-8")
    with transaction.atomic():
        attempt = JobAttempt.objects.select_for_update().get(pk=attempt_id)
        upload_window_check(attempt)
        end = attempt.log_offset
        if offset > end or offset + len(data) <= end or offset < 0:
            return end
        fresh = data[end - offset :]
        JobLogChunk.objects.create(attempt=attempt, offset=end, size=len(fresh), data=fresh)
        new_end = end + len(fresh)
        start = _tail_keep(attempt, new_end)
        JobAttempt.objects.filter(pk=attempt_id).update(log_offset=new_end, log_start=start)
        event = {
            "type": "job.log",
            "job_id": attempt.job_id,
            "attempt": attempt.number,
            "offset": end,
            "next_offset": new_end,
            "data": fresh.decode("utf-8", errors="replace"),
        }
        transaction.on_commit(lambda: events.job_event_push(attempt.job_id, event))
    return new_end


def _tail_keep(attempt: JobAttempt, end: int) -> int:
    """Drop what lies before the last JOB_LOG_MAX_BYTES bytes; return the new log start."""
    cutoff = end - settings.JOB_LOG_MAX_BYTES
    if cutoff <= attempt.log_start:
        return attempt.log_start
    chunks = JobLogChunk.objects.filter(attempt=attempt)
    chunks.annotate(end=F("offset") + F("size")).filter(end__lte=cutoff).delete()
    straddling = chunks.filter(offset__lt=cutoff).first()
    if straddling is not None:
        kept = bytes(straddling.data)[cutoff - straddling.offset :]
        straddling.delete()
        JobLogChunk.objects.create(attempt=attempt, offset=cutoff, size=len(kept), data=kept)
    return cutoff


@dataclass(frozen=True)
class LogPage:
    attempt: int | None
    offset: int
    next_offset: int
    data: str
    truncated: bool
    is_complete: bool


def truncation_notice(dropped: int) -> str:
    return (
        f"[communipute: {dropped} earlier bytes of this log were dropped; "
        f"the server keeps the last {settings.JOB_LOG_MAX_BYTES} bytes]\n"
    )


def log_read(
    job: Job, *, offset: int = 0, attempt_number: int | None = None, limit: int = MAX_READ_BYTES
) -> LogPage:
    """Log bytes of an attempt (the latest, unless named) from ``offset``.

    When the bytes at ``offset`` were dropped to keep the tail, the page starts at the oldest
    byte kept, with a notice line in front, and ``truncated`` is true.
    """
    attempts = job.attempts.order_by("-number")
    if attempt_number is not None:
        attempts = attempts.filter(number=attempt_number)
    attempt = attempts.first()
    if attempt is None:
        return LogPage(attempt_number, offset, offset, "", False, False)
    start = min(max(offset, attempt.log_start), attempt.log_offset)
    chunks = (
        JobLogChunk.objects.filter(attempt=attempt, offset__lt=start + limit)
        .annotate(end=F("offset") + F("size"))
        .filter(end__gt=start)
        .order_by("offset")
    )
    raw = b"".join(bytes(c.data)[max(0, start - c.offset) :] for c in chunks)[:limit]
    truncated = offset < attempt.log_start
    text = raw.decode("utf-8", errors="replace")
    if truncated:
        text = truncation_notice(attempt.log_start) + text
    next_offset = start + len(raw)
    is_complete = attempt.finished_at is not None and next_offset >= attempt.log_offset
    return LogPage(attempt.number, start, next_offset, text, truncated, is_complete)
