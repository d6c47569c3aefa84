"""The environment cache's bookkeeping: when each cached environment was last used, and
which to prune, least recently used first, to stay within ``env_cache_max_mb``.

Docker volume labels can't change after creation, so the last use lives in a small JSON file
in the agent's work root (``env-cache.json``: environment key -> Unix time). An environment
the file doesn't know (made by another agent on the engine, or before this file existed)
counts as last used when its volume was created. Nothing here talks to Docker: the runtime
lists the volumes and removes what ``prune_plan`` names.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

USE_FILE = "env-cache.json"
# Keys no cached environment has any more are dropped from the file past this many entries.
MAX_RECORDS = 10_000


@dataclass(frozen=True)
class CachedEnv:
    """One cached environment: its key, its data volume, the bytes it holds, its last use
    and whether something uses it now (a container mounts it, or an attempt of this agent
    was prepared with it)."""

    key: str
    data_volume: str
    size_bytes: int
    last_used: float
    is_in_use: bool


def prune_plan(envs: Iterable[CachedEnv], max_bytes: int) -> list[CachedEnv]:
    """The environments to remove, oldest use first, until the rest fit ``max_bytes``. One in
    use is never removed (the cache may then stay over its size until it is free)."""
    envs = list(envs)
    total = sum(env.size_bytes for env in envs)
    plan = []
    for env in sorted(envs, key=lambda env: (env.last_used, env.key)):
        if total <= max_bytes:
            break
        if env.is_in_use:
            continue
        plan.append(env)
        total -= env.size_bytes
    return plan


class UseRecord:
    """The last-use file of one work root. Thread-safe within the agent's process."""

    def __init__(self, work_root: Path) -> None:
        self.path = work_root / USE_FILE
        self._lock = threading.Lock()

    def read(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            str(key): float(value)
            for key, value in data.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }

    def touch(self, key: str, when: float) -> None:
        """Record a use of ``key`` at ``when``."""
        with self._lock:
            records = self.read()
            records[key] = when
            if len(records) > MAX_RECORDS:
                newest = sorted(records.items(), key=lambda item: item[1])[-MAX_RECORDS:]
                records = dict(newest)
            self._write(records)

    def forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            records = self.read()
            for key in keys:
                records.pop(key, None)
            self._write(records)

    def _write(self, records: dict[str, float]) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".env-cache.")
        except OSError as exc:
            log.warning("cannot record environment use in %s: %s", self.path, exc)
            return
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(records, handle, sort_keys=True)
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("cannot record environment use in %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
