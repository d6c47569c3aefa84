"""``agent.protocol.decode``: microseconds per message, for the messages agents send most.

    python -m bench.protocol [--number 20000] [--repeat 5] [--against REV]

Times ``decode(raw, AGENT_MESSAGES)`` (JSON parse, envelope, every field's type and bounds) of a
heartbeat, a usage report and a log chunk, best of ``--repeat`` runs of ``--number`` calls.
With ``--against REV`` it loads ``agent/protocol.py`` as it was at that git revision too and
times both side by side in this process (e.g. ``896cb39^``, before checkers were built once
per type instead of ``typing.get_type_hints`` on every message). Needs no database: the
protocol module is the agent's, standard library only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

MESSAGES: dict[str, dict[str, Any]] = {
    "heartbeat": {
        "load": 0.25,
        "is_available": True,
        "unavailable_reason": "",
        "running_jobs": [{"job_id": 41, "attempt": 1}, {"job_id": 42, "attempt": 2}],
    },
    "job.usage": {
        "job_id": 41,
        "attempt": 1,
        "seq": 17,
        "cpu_seconds": 12.5,
        "wall_seconds": 17.0,
        "memory_peak_mb": 512,
        "memory_current_mb": 300,
        "gpu_seconds": 0.0,
    },
    "job.log": {"job_id": 41, "attempt": 1, "offset": 4096, "data": "line of output\n" * 20},
}


def protocol_at(revision: str) -> ModuleType:
    """agent/protocol.py as it was at ``revision``, loaded as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:agent/protocol.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "protocol_at_revision.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"protocol_at_{abs(hash(revision))}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def per_decode_us(protocol: ModuleType, message_type: str, number: int, repeat: int) -> float:
    """Best-of-``repeat`` microseconds per ``decode`` of one message of ``message_type``."""
    raw = json.dumps({"type": message_type, "id": "f" * 32, "data": MESSAGES[message_type]})
    protocol.decode(raw, protocol.AGENT_MESSAGES)  # the first call builds what is cached
    runs = timeit.repeat(
        lambda: protocol.decode(raw, protocol.AGENT_MESSAGES), number=number, repeat=repeat
    )
    return min(runs) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--against", help="a git revision to time side by side")
    args = parser.parse_args(argv)
    from agent import protocol

    other = protocol_at(args.against) if args.against else None
    for message_type in MESSAGES:
        now = per_decode_us(protocol, message_type, args.number, args.repeat)
        line = f"{message_type:<10} {now:7.1f} µs/decode"
        if other is not None:
            then = per_decode_us(other, message_type, args.number, args.repeat)
            line += f"   at {args.against}: {then:7.1f} µs   ({then / now:.1f}x the time)"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
