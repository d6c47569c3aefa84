"""What a restarted agent needs to carry on with an attempt it finds still running.

The offer is gone after a restart, so the attempt's cost cap, its GPU count and the usage
counters the engine cannot give back (the last ``seq``, the tracked memory peak, the CPU and
wall time last reported: a container that exited before the restart has no cgroup to read, and
a final report below what the server accepted would be refused as ``counters_backwards``) are
kept in a small file in the attempt directory. The sandbox never sees it: only ``work/``,
``outputs/`` and ``meter/`` are mounted into the container.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.jobrunner.offer import CostCap
from agent.protocol import PoolRef, ProtocolError, payload_check

logger = logging.getLogger(__name__)

STATE_FILE = "agent-state.json"


@dataclass(frozen=True)
class AttemptState:
    seq: int
    memory_peak_mb: int
    gpus: int
    cap: CostCap | None
    cpu_seconds: float = 0.0  # the CPU time of the last report (files before it: 0)
    wall_seconds: float = 0.0  # the wall time of the last report (files before it: 0)
    # The offer's pool (docs/pools.md): where a pool job's outputs and log go after a restart.
    pool: PoolRef | None = None


def state_path(attempt_dir: Path) -> Path:
    return attempt_dir / STATE_FILE


def state_write(attempt_dir: Path, state: AttemptState) -> None:
    """Write atomically; a missing attempt directory (cleaned up already) is not an error."""
    if not attempt_dir.is_dir():
        return
    text = json.dumps(
        {
            "seq": state.seq,
            "memory_peak_mb": state.memory_peak_mb,
            "gpus": state.gpus,
            "cap": state.cap.to_json() if state.cap is not None else None,
            "cpu_seconds": state.cpu_seconds,
            "wall_seconds": state.wall_seconds,
            "pool": state.pool,
        }
    )
    descriptor, temporary = tempfile.mkstemp(dir=attempt_dir, prefix=f".{STATE_FILE}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, state_path(attempt_dir))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def state_read(attempt_dir: Path) -> AttemptState | None:
    try:
        data = json.loads(state_path(attempt_dir).read_text(encoding="utf-8"))
        cap = CostCap.from_json(data["cap"]) if data.get("cap") else None
        return AttemptState(
            seq=int(data["seq"]),
            memory_peak_mb=int(data["memory_peak_mb"]),
            gpus=int(data["gpus"]),
            cap=cap,
            cpu_seconds=max(0.0, float(data.get("cpu_seconds", 0.0))),
            wall_seconds=max(0.0, float(data.get("wall_seconds", 0.0))),
            pool=_pool_read(data.get("pool")),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring the unreadable state of %s: %s", attempt_dir, exc)
        return None


def _pool_read(data: Any) -> PoolRef | None:
    """The stored pool, checked as the offer's was (a file edited by hand is not trusted)."""
    if data is None:
        return None
    try:
        payload_check(PoolRef, data, "pool")
    except ProtocolError as exc:
        raise ValueError(f"the stored pool is not valid: {exc.message}") from None
    pool: PoolRef = data
    return pool
