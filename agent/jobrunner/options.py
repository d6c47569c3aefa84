"""The job runner's timings (tests shorten them)."""

from __future__ import annotations

from dataclasses import dataclass

from agent.jobrunner.logs import DEFAULT_WINDOW_BYTES
from agent.protocol import MAX_LOG_CHUNK_BYTES


@dataclass(frozen=True)
class RunnerOptions:
    """Timings of the job runner; tests shorten them."""

    sample_seconds: float = 1.0  # how often usage is sampled (and the local cap checked)
    log_flush_seconds: float = 0.2  # how long a partial log chunk may wait for more output
    log_chunk_bytes: int = MAX_LOG_CHUNK_BYTES
    log_window_bytes: int = DEFAULT_WINDOW_BYTES  # unacknowledged log bytes before reading waits
    log_resend_seconds: float = 5.0  # no log.ack progress for this long: send again from it
    log_drain_seconds: float = 10.0  # after the exit, how long to wait for a silent log stream
    cancel_grace_seconds: float = 10.0  # SIGTERM, then SIGKILL this much later
    budget_grace_seconds: float = 1.0  # the cap allows one more second, not more
    final_resend_seconds: float = 15.0  # job.finished not acknowledged: send it again
    finish_give_up_seconds: float = 600.0  # ... and give up after this long connected
    upload_give_up_seconds: float = 300.0  # keep retrying an output upload for this long
    upload_backoff_seconds: float = 1.0  # first retry delay (doubles, at most 30 s)
    readiness_seconds: float = 60.0  # how often the runtime checks itself (and after a fault)
