"""Job logs: byte-offset chunks from the agent, stored once, readable from any offset.

Offsets count bytes of the UTF-8 text the agent sends. The server stores only a contiguous
prefix: a resent or overlapping chunk adds just its new bytes, a chunk past a gap is dropped
(the ack names the offset the agent must resend from). Each attempt keeps at most
JOB_LOG_MAX_BYTES: its first ``head_bytes()`` (where the traceback of a failed install or an
early error usually is) and its last bytes (how it ended); what lies between is dropped, and a
reader crossing the gap gets a marker line in its place.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max

from accounts.models import PoolLogs
from config.errors import Conflict
from jobs import events
from jobs.models import Job, JobAttempt, JobLogChunk
from jobs.services.outputs import upload_window_check, upload_window_is_open

MAX_READ_BYTES = 1024 * 1024


def log_kept_elsewhere(job: Job) -> str:
    """The job's pool setting for its log when it is not sent to the server ("store": kept on
    the pool's store; "redacted": kept nowhere), else "" (docs/pools.md)."""
    if job.pool_id is None or job.pool is None or job.pool.pool_logs == PoolLogs.CENTRAL:
        return ""
    return str(job.pool.pool_logs)


def log_absence_check(job: Job, attempt_number: int | None = None) -> None:
    """A job whose pool keeps its log off the server has none here: 409 ``log_not_kept``
    saying where it is and how many bytes the run wrote, rather than an empty log that looks
    like a job that printed nothing."""
    kept = log_kept_elsewhere(job)
    if not kept:
        return
    attempts = job.attempts.order_by("-number")
    if attempt_number is not None:
        attempts = attempts.filter(number=attempt_number)
    attempt = attempts.first()
    size = attempt.log_bytes if attempt is not None else None
    written = f"the run wrote {size} bytes of log" if size is not None else "no size reported yet"
    where = (
        "keeps its jobs' logs on its own store"
        if kept == PoolLogs.STORE
        else "does not keep its jobs' logs anywhere (redacted)"
    )
    raise Conflict(
        f"this job's pool {where}: the server holds none of it ({written})",
        code="log_not_kept",
        fields={"logs": [kept]},
    )


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


def head_bytes() -> int:
    """How many bytes of the log's beginning are always kept (at most half the cap)."""
    return min(settings.JOB_LOG_HEAD_BYTES, settings.JOB_LOG_MAX_BYTES // 2)


def _tail_keep(attempt: JobAttempt, end: int) -> int:
    """Keep ``[0, head)`` and the last ``JOB_LOG_MAX_BYTES - head`` bytes; drop what lies
    between and return the new start of the kept tail (``log_start``)."""
    head = head_bytes()
    cutoff = end - (settings.JOB_LOG_MAX_BYTES - head)
    if cutoff <= max(head, attempt.log_start):
        return attempt.log_start
    chunks = JobLogChunk.objects.filter(attempt=attempt).annotate(end=F("offset") + F("size"))
    chunks.filter(offset__gte=head, end__lte=cutoff).delete()
    for straddling in chunks.filter(offset__lt=cutoff, end__gt=head).order_by("offset"):
        data = bytes(straddling.data)
        straddling.delete()
        if straddling.offset < head:
            _chunk_create(attempt, straddling.offset, data[: head - straddling.offset])
        if straddling.offset + len(data) > cutoff:
            _chunk_create(attempt, cutoff, data[max(0, cutoff - straddling.offset) :])
    return cutoff


def _chunk_create(attempt: JobAttempt, offset: int, data: bytes) -> None:
    JobLogChunk.objects.create(attempt=attempt, offset=offset, size=len(data), data=data)


@dataclass(frozen=True)
class LogPage:
    attempt: int | None
    offset: int
    next_offset: int
    data: str
    truncated: bool
    is_complete: bool


def truncation_notice(dropped: int) -> str:
    """The line a reader gets in place of the ``dropped`` bytes between head and tail."""
    return (
        f"[communipute: {dropped} bytes of this log were dropped here; the server keeps "
        f"the first {head_bytes()} and the last {settings.JOB_LOG_MAX_BYTES - head_bytes()} "
        "bytes]\n"
    )


def _bytes_read(attempt: JobAttempt, start: int, stop: int) -> bytes:
    if stop <= start:
        return b""
    chunks = (
        JobLogChunk.objects.filter(attempt=attempt, offset__lt=stop)
        .annotate(end=F("offset") + F("size"))
        .filter(end__gt=start)
        .order_by("offset")
    )
    raw = b"".join(bytes(c.data)[max(0, start - c.offset) :] for c in chunks)
    return raw[: stop - start]


def _head_end(attempt: JobAttempt) -> int:
    """Where the kept head ends: the gap runs from here to ``log_start``."""
    if attempt.log_start == 0:
        return 0
    head = JobLogChunk.objects.filter(attempt=attempt, offset__lt=attempt.log_start).aggregate(
        head_end=Max(F("offset") + F("size"))
    )["head_end"]
    return int(head or 0)


def log_read(
    job: Job, *, offset: int = 0, attempt_number: int | None = None, limit: int = MAX_READ_BYTES
) -> LogPage:
    """Log bytes of an attempt (the latest, unless named) from ``offset``.

    A page that reaches the dropped middle of the log goes on at the oldest byte of the kept
    tail, with the marker line in between, and ``truncated`` is true; one that starts inside
    the gap starts at the tail (``offset`` says where), after the marker.
    """
    attempts = job.attempts.order_by("-number")
    if attempt_number is not None:
        attempts = attempts.filter(number=attempt_number)
    attempt = attempts.first()
    if attempt is None:
        return LogPage(attempt_number, offset, offset, "", False, False)
    head_end, tail_start = _head_end(attempt), attempt.log_start
    start = position = min(offset, attempt.log_offset)
    raw, truncated, notice = b"", False, ""
    if position < head_end:
        raw = _bytes_read(attempt, position, min(head_end, position + limit))
        position += len(raw)
    if head_end <= position < tail_start and len(raw) < limit:
        notice, truncated, position = truncation_notice(tail_start - head_end), True, tail_start
        start = start if raw else tail_start
    tail = b""
    if position >= tail_start and len(raw) < limit:
        tail = _bytes_read(attempt, position, min(attempt.log_offset, position + limit - len(raw)))
    text = _decoded(raw) + notice + _decoded(tail)
    next_offset = position + len(tail)
    return LogPage(
        attempt.number, start, next_offset, text, truncated, _is_complete(attempt, next_offset)
    )


def _is_complete(attempt: JobAttempt, read_to: int) -> bool:
    """The attempt finished, this read reached the stored end, and the stored end is the whole
    log: every byte the agent declared in ``job.finished`` arrived — or, for an agent that
    declared nothing (or bytes that never come), the late-upload window closed, so nothing more
    can arrive."""
    if attempt.finished_at is None or read_to < attempt.log_offset:
        return False
    declared = attempt.log_bytes
    all_arrived = declared is not None and attempt.log_offset >= declared
    return all_arrived or not upload_window_is_open(attempt)


def _decoded(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
