"""Cumulative usage of one attempt, as the agent reports it (``job.usage``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.protocol import Usage
from agent.runtime.types import UsageSample


def _floor_ms(seconds: float) -> float:
    # The server floors to milliseconds too; never report a fraction it would round up.
    return math.floor(max(seconds, 0.0) * 1000) / 1000


@dataclass
class UsageMeter:
    """Counters since the run container started; the peak is tracked here as well, because
    cgroup v2 before Linux 5.19 keeps none. ``seq`` grows with every report."""

    job_id: int
    attempt: int
    gpus: int
    started_at: float  # time.monotonic() when the run container started
    seq: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    # The wall time of the last report: a later sample may lower wall_seconds to how long the
    # run took (it ended while the agent was away), never below what the server was told.
    reported_wall_seconds: float = 0.0
    memory_current_mb: int = 0
    memory_peak_mb: int = 0

    def observe(self, sample: UsageSample, now: float) -> None:
        """Take one sample (counters only move forward). Wall time is this agent's clock since
        the start, up to how long the run took once the runtime says it ended (an attempt found
        again after it exited is not billed the time the agent was away)."""
        self.cpu_seconds = max(self.cpu_seconds, sample.cpu_seconds)
        wall = now - self.started_at
        if sample.wall_seconds is not None:  # it has ended: no longer than it ran
            wall = min(wall, sample.wall_seconds)
        self.wall_seconds = max(self.reported_wall_seconds, wall)
        self.memory_current_mb = sample.memory_current_mb
        self.memory_peak_mb = max(
            self.memory_peak_mb, sample.memory_peak_mb, sample.memory_current_mb
        )

    def report(self, *, is_final: bool = False) -> Usage:
        """The next cumulative report (its seq one higher than the last)."""
        self.seq += 1
        self.reported_wall_seconds = max(self.reported_wall_seconds, self.wall_seconds)
        wall = _floor_ms(self.reported_wall_seconds)
        usage = Usage(
            job_id=self.job_id,
            attempt=self.attempt,
            seq=self.seq,
            cpu_seconds=_floor_ms(self.cpu_seconds),
            wall_seconds=wall,
            memory_peak_mb=self.memory_peak_mb,
            memory_current_mb=0 if is_final else self.memory_current_mb,
            gpu_seconds=_floor_ms(self.gpus * wall),
        )
        if is_final:
            usage["is_final"] = True
        return usage
