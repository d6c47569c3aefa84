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
    memory_current_mb: int = 0
    memory_peak_mb: int = 0

    def observe(self, sample: UsageSample, now: float) -> None:
        """Take one sample (counters only move forward)."""
        self.cpu_seconds = max(self.cpu_seconds, sample.cpu_seconds)
        self.wall_seconds = max(self.wall_seconds, now - self.started_at)
        self.memory_current_mb = sample.memory_current_mb
        self.memory_peak_mb = max(
            self.memory_peak_mb, sample.memory_peak_mb, sample.memory_current_mb
        )

    def report(self, *, is_final: bool = False) -> Usage:
        """The next cumulative report (its seq one higher than the last)."""
        self.seq += 1
        wall = _floor_ms(self.wall_seconds)
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
