"""Run the benchmarks: ``python -m bench`` (all of them), ``python -m bench ledger ingest``
(some), ``python -m bench --list``. Options of one benchmark: ``python -m bench.ledger --help``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

import bench


def bench_names() -> list[str]:
    """Every benchmark module in bench/, in name order."""
    return sorted(
        module.name
        for module in pkgutil.iter_modules(bench.__path__)
        if not module.name.startswith("_")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    available = bench_names()
    if args.list:
        print("\n".join(available))
        return 0
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; have {', '.join(available)}")
    # Benchmarks run against scratch data; they need a key only because settings insist on one.
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    failures = 0
    for name in args.names or available:
        print(f"\n== bench.{name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        failures += 1 if module.main([]) else 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
