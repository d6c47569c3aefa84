"""Repeat-start of a job with requirements: a cold install, the warm environment, and a close
requirement set installed from the wheelhouse.

    python -m bench.warm_env [--rounds 3] [--requirements six attrs]

Each round uses a fresh, empty wheelhouse volume and forgets the environments it makes, then
times ``DockerRuntime.prepare`` (what the agent waits for before a job starts):

    cold        the set installed with no wheelhouse (pip from the index, as before)
    cold+wh     the set with an empty wheelhouse: tried from it, downloaded into it, installed
    warm        the same set again: the cached environment
    close       a subset not cached yet (the first requirement alone): from the wheelhouse,
                no network

and prints the medians with each ratio to ``cold`` of the same run. Needs Docker, the runner
image (COMMUNIPUTE_RUNNER_IMAGE) and PyPI (or the index of COMMUNIPUTE_PIP_INDEX_URL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from agent.runtime import DockerRuntime, JobSpec, RuntimeSettings
from agent.runtime.hardening import env_key, wheelhouse_name

IMAGE = os.environ.get("COMMUNIPUTE_RUNNER_IMAGE", "communipute/runner:latest")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _runtime(work_root: Path, wheelhouse: str) -> DockerRuntime:
    return DockerRuntime(
        RuntimeSettings(
            work_root=work_root,
            image=IMAGE,
            agent_marker=f"bench-{uuid.uuid4().hex[:8]}",
            pip_index_url=os.environ.get("COMMUNIPUTE_PIP_INDEX_URL") or None,
            pip_cert_path=CA_BUNDLE if CA_BUNDLE.is_file() else None,
            wheelhouse_volume=wheelhouse,
            disk_quotas="off",  # the install step only: no job files are at stake here
        )
    )


def _forget(runtime: DockerRuntime, requirements: tuple[str, ...]) -> None:
    key = env_key(runtime.image_id(), requirements, runtime.settings)
    for volume in runtime.client.volumes.list(filters={"label": f"communipute.env={key}"}):
        volume.remove(force=True)


def _prepare_seconds(runtime: DockerRuntime, attempt: int, requirements: tuple[str, ...]) -> float:
    spec = JobSpec(
        job_id=1,
        attempt=attempt,
        files={"main.py": b"print(1)\n"},
        entrypoint="main.py",
        requirements=requirements,
    )
    started = time.monotonic()
    prepared = runtime.prepare(spec)
    seconds = time.monotonic() - started
    if prepared.failure is not None:
        raise SystemExit(f"prepare failed: {prepared.failure.reason}")
    runtime.kill(1, attempt)
    return seconds


def _round(work_root: Path, requirements: tuple[str, ...]) -> dict[str, float]:
    close = requirements[:1]
    plain = _runtime(work_root, "")
    warm = _runtime(work_root, f"bench-wheelhouse-{uuid.uuid4().hex[:8]}")
    sets = (requirements, close)
    try:
        for runtime in (plain, warm):
            for chosen in sets:
                _forget(runtime, chosen)
        timings = {"cold": _prepare_seconds(plain, 1, requirements)}
        _forget(plain, requirements)
        timings["cold+wh"] = _prepare_seconds(warm, 2, requirements)
        timings["warm"] = _prepare_seconds(warm, 3, requirements)
        timings["close"] = _prepare_seconds(warm, 4, close)
        return timings
    finally:
        for runtime in (plain, warm):
            for chosen in sets:
                _forget(runtime, chosen)
        warm.client.volumes.get(wheelhouse_name(warm.settings)).remove(force=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requirements", nargs="+", default=["six", "attrs"])
    args = parser.parse_args(argv)
    requirements = tuple(args.requirements)
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as directory:
        for number in range(args.rounds):
            rounds.append(_round(Path(directory) / str(number), requirements))
            print(
                f"round {number + 1}: "
                + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in rounds[-1].items()),
                flush=True,
            )
    cold = statistics.median(r["cold"] for r in rounds)
    print(f"requirements {' '.join(requirements)}; close variant {requirements[0]}")
    for name in rounds[0]:
        median = statistics.median(r[name] for r in rounds)
        print(f"  {name:8} median {median:6.2f} s   x{median / cold:.2f} of cold")


if __name__ == "__main__":
    main()
