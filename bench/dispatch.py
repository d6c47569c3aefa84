"""Dispatch end to end: submit-to-offer and offer-to-running through daphne and the real agent,
beside a bare ``docker run`` of the same image, in the same run.

    python -m bench.dispatch [--jobs 30] [--image communipute/runner:latest]

Starts daphne on a free loopback port on a scratch database (PostgreSQL ``DATABASE_URL``) with
the Redis channel layer (``REDIS_URL``), enrolls a real ``communipute-agent`` with the Docker
job manager, then alternates: one job through ``POST /api/v1/jobs/`` (auto placement, the hold
placed; a hello-world with the requirement ``six==1.17.0``, whose environment is cached after
the warm-up) run to its end, and one bare ``docker run --rm IMAGE python3 -c pass``.

- submit -> offer: from the start of the POST to the agent holding the offer (its "accepted
  job" log line, same machine clock, millisecond resolution);
- offer -> running: from the offer's creation to the server recording ``job.started running``
  (the offer's trip, accept, the cached install step, the hardened container's start and the
  running message's trip; server clock);
- bare docker run: the whole CLI call, create + start + exit + remove.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._django import django_setup, scratch_database
from bench._processes import ROOT, daphne_start, free_port, wait_until

# The test settings serve no static files; whitenoise warns about the missing folder.
warnings.filterwarnings("ignore", message="No directory at")

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
REQUIREMENT = "six==1.17.0"
SOURCE = "import six\nprint('hello', six.__version__)\n"
WARM_UP = 2
_ACCEPTED = re.compile(r"^(\S+ \S+) INFO agent\.jobs: accepted job (\d+) attempt 1$")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30, help="measured jobs (and docker runs)")
    parser.add_argument(
        "--image", default=os.environ.get("COMMUNIPUTE_RUNNER_IMAGE", "communipute/runner:latest")
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    django_setup()
    from django.conf import settings

    if not settings.IS_POSTGRES or not settings.REDIS_URL:
        print("bench.dispatch needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL); skipped")
        return 0
    image_check = subprocess.run(
        ["docker", "image", "inspect", args.image], capture_output=True, check=False
    )
    if image_check.returncode != 0:
        print(f"bench.dispatch needs Docker and the image {args.image}; skipped")
        return 0
    with scratch_database("bench_dispatch"), tempfile.TemporaryDirectory() as directory:
        return _run(args, Path(directory))


def _run(args: argparse.Namespace, directory: Path) -> int:
    port = free_port()
    daphne = _daphne(port, directory)
    agent: subprocess.Popen[bytes] | None = None
    try:
        client, agent_env, host_id = _actors(port, directory, args.image)
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run"],
            cwd=ROOT,
            env=agent_env,
            stdout=(directory / "agent.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: _online(host_id), "the agent online")
        submitted: dict[int, float] = {}
        bare: list[float] = []
        for round_number in range(WARM_UP + args.jobs):
            job_id, started = _job_run(client)
            if round_number >= WARM_UP:
                submitted[job_id] = started
                bare.append(_docker_run(args.image))
        _report(args, submitted, _accept_times(directory / "agent.log"), bare)
        return 0
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
        daphne.terminate()
        daphne.wait(30)


def _daphne(port: int, directory: Path) -> subprocess.Popen[bytes]:
    from django.db import connection

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    url = f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": url,
        "HOST_HEARTBEAT_SECONDS": "5",
        "MEDIA_ROOT": str(directory / "media"),
        "PYTHONPATH": str(ROOT),
    }
    return daphne_start(port, env, directory / "daphne.log")


def _actors(port: int, directory: Path, image: str) -> tuple[Any, dict[str, str], int]:
    """A funded renter's API client, and an enrolled host (its agent's environment and id)."""
    from rest_framework.test import APIClient

    from accounts.models import User
    from config.transactions import durable_call
    from hosts.models import Host
    from hosts.services import enrollment_create
    from ledger.services import wallet_credit

    suffix = secrets.token_hex(4)
    renter = User.objects.create_user(username=f"renter-{suffix}", email=f"r{suffix}@bench.invalid")
    owner = User.objects.create_user(username=f"owner-{suffix}", email=f"o{suffix}@bench.invalid")
    durable_call(
        wallet_credit,
        user=renter,
        amount_micros=10**12,
        key=f"bench-{suffix}",
        reason="bench",
        source="purchase",
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMMUNIPUTE_")},
        "PYTHONPATH": str(ROOT),
        "COMMUNIPUTE_AGENT_CONFIG": str(directory / "agent.json"),
        "COMMUNIPUTE_WORK_DIR": str(directory / "work"),
        "COMMUNIPUTE_RUNNER_IMAGE": image,
        "COMMUNIPUTE_JOB_MANAGER": "docker",
        "COMMUNIPUTE_LOG_LEVEL": "INFO",
    }
    if CA_BUNDLE.is_file():
        env["COMMUNIPUTE_PIP_CERT"] = str(CA_BUNDLE)
    token = enrollment_create(owner=owner).token
    server = f"http://127.0.0.1:{port}"
    subprocess.run(
        [sys.executable, "-m", "agent.cli", "enroll", "--server", server, "--token", token],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    host = Host.objects.get(owner=owner)
    Host.objects.filter(pk=host.pk).update(
        cpu_core_hour_micros=100_000, memory_gb_hour_micros=10_000
    )
    client = APIClient()
    client.force_authenticate(renter)
    return client, env, host.pk


def _job_run(client: Any) -> tuple[int, float]:
    """Submit one job and wait for its end; (job id, when the POST started)."""
    from jobs.models import Job

    body = {
        "code": SOURCE,
        "requirements": [REQUIREMENT],
        "placement": "auto",
        "cpus": 1,
        "memory_mb": 256,
        "timeout_seconds": 120,
        "max_cost_micros": 1_000_000,
    }
    started = time.time()
    response = client.post("/api/v1/jobs/", body, format="json")
    if response.status_code != 201:
        raise SystemExit(f"submit failed: {response.status_code} {response.content[:300]!r}")
    job_id = int(response.json()["id"])
    final = {"succeeded", "failed", "cancelled", "timed_out", "budget_exhausted"}
    wait_until(lambda: Job.objects.get(pk=job_id).status in final, f"job {job_id}", timeout=300)
    job = Job.objects.get(pk=job_id)
    if job.status != "succeeded":
        raise SystemExit(f"job {job_id} ended {job.status}: {job.status_reason}")
    return job_id, started


def _docker_run(image: str) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", image, "python3", "-c", "pass"], check=True)
    return time.perf_counter() - started


def _accept_times(log: Path) -> dict[int, float]:
    times = {}
    for line in log.read_text(errors="replace").splitlines():
        match = _ACCEPTED.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            times[int(match.group(2))] = stamp.timestamp()
    return times


def _report(
    args: argparse.Namespace,
    submitted: dict[int, float],
    accepted: dict[int, float],
    bare: list[float],
) -> None:
    from jobs.models import JobAttempt

    to_offer = [(accepted[job] - started) * 1000 for job, started in submitted.items()]
    to_running = []
    for offered, running in JobAttempt.objects.filter(job_id__in=submitted).values_list(
        "offered_at", "started_at"
    ):
        assert running is not None, "a job that succeeded was running"
        to_running.append((running - offered).total_seconds() * 1000)
    print(
        f"{args.jobs} jobs through daphne and the real agent (Docker job manager, image "
        f"{args.image}, cached environment {REQUIREMENT}), alternating with bare docker runs:"
    )
    for name, values in (
        ("submit -> offer at the agent", to_offer),
        ("offer -> running", to_running),
        (f"bare docker run --rm {args.image} python3 -c pass", [b * 1000 for b in bare]),
    ):
        print(
            f"  {name}: p50 {_percentile(values, 50):.0f} ms, p99 {_percentile(values, 99):.0f} ms"
        )


def _percentile(values: list[float], percent: int) -> float:
    if percent == 50:
        return float(statistics.median(values))
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


def _online(host_id: int) -> bool:
    from hosts.models import Host, HostStatus

    return Host.objects.filter(pk=host_id, status=HostStatus.ONLINE).exists()


if __name__ == "__main__":
    sys.exit(main())
