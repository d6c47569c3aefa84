"""Dispatch end to end: submit-to-offer and offer-to-running through daphne and the real agent,
beside a bare ``docker run`` of the same image, in the same run; directly and through HAProxy.

    python -m bench.dispatch [--jobs 30] [--front direct|haproxy] [--web 2]
                             [--image communipute/runner:latest]

Starts daphne as ``make cluster`` runs it (scripts/cluster.py: the production settings, one
process on a free loopback port) on a scratch database (PostgreSQL ``DATABASE_URL``) with the
Redis channel layer (``REDIS_URL``). ``--front haproxy`` starts ``--web`` daphne processes
(1 or more) with HAProxy in front of them (deploy/haproxy.cfg as scripts/cluster.py fills it),
and measures both fronts in the same run: **direct** (the baseline: straight to the first
daphne) and **haproxy** (the renter's POST and the agent's websocket both through HAProxy,
which balances them over the daphne processes: an offer made on one reaches a socket on the
other through Redis). Each front has its own host, enrolled through it, with a real
``communipute-agent`` and the Docker job manager.

Then rounds: in each, one job per front through ``POST /api/v1/jobs/`` over HTTP (a kept-alive
connection per front, the renter's API token; auto placement, the hold placed; a hello-world
with the requirement ``six==1.17.0``, whose environment is cached after the warm-up) run to its
end, the fronts in turn (first one, then the other: their order alternates by round), and one
bare ``docker run --rm IMAGE python3 -c pass``. Before each job its front's host is made the
cheaper one (outside the measured leg), so the marketplace places the job there.

- offer written: from the start of the POST to the offer's attempt row being created (the
  request's trip, authentication, the checks, the job, the hold; server clock);
- POST answered: from the start of the POST to its 201 (the request, the commit, the answer);
- submit -> offer: from the start of the POST to the agent holding the offer (its "accepted
  job" log line, same machine clock, millisecond resolution): the request, the commit, the
  channel layer (Redis), daphne and the websocket;
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
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

from bench._django import django_setup, scratch_database
from bench._processes import ROOT, cluster_script, free_port, wait_until

# The test settings serve no static files; whitenoise warns about the missing folder.
warnings.filterwarnings("ignore", message="No directory at")

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
REQUIREMENT = "six==1.17.0"
SOURCE = "import six\nprint('hello', six.__version__)\n"
WARM_UP = 2
HAPROXY = "haproxy"
# The host a round's job goes to, and the other one (µcr per core-hour, per GB-hour).
CHEAP = {"cpu_core_hour_micros": 100_000, "memory_gb_hour_micros": 10_000}
DEAR = {"cpu_core_hour_micros": 200_000, "memory_gb_hour_micros": 20_000}
_ACCEPTED = re.compile(r"^(\S+ \S+) INFO agent\.jobs: accepted job (\d+) attempt 1$")


@dataclass
class Front:
    """One way in (direct to daphne, or HAProxy) with its host, agent and measured jobs."""

    name: str
    url: str
    renter: requests.Session
    directory: Path
    host_id: int = 0
    agent: subprocess.Popen[bytes] | None = None
    submitted: dict[int, float] = field(default_factory=dict)  # job -> POST started
    answered: dict[int, float] = field(default_factory=dict)  # job -> 201 received

    @property
    def agent_log(self) -> Path:
        return self.directory / "agent.log"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30, help="measured jobs per front")
    parser.add_argument(
        "--front",
        choices=("direct", "haproxy"),
        default="direct",
        help="direct: daphne alone; haproxy: direct (the baseline) and through HAProxy",
    )
    parser.add_argument("--web", type=int, default=2, help="daphne processes behind HAProxy")
    parser.add_argument(
        "--image", default=os.environ.get("COMMUNIPUTE_RUNNER_IMAGE", "communipute/runner:latest")
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.jobs < 1 or args.web < 1:
        parser.error("--jobs and --web must be at least 1")
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
    if args.front == "haproxy" and shutil.which(HAPROXY) is None:
        print("bench.dispatch --front haproxy needs HAProxy (apt-get install haproxy); skipped")
        return 0
    with scratch_database("bench_dispatch"), tempfile.TemporaryDirectory() as directory:
        return _run(args, Path(directory))


def _run(args: argparse.Namespace, directory: Path) -> int:
    script = cluster_script()
    web = args.web if args.front == "haproxy" else 1
    cluster = script.Cluster(
        bind="127.0.0.1",
        port=free_port(),
        web=web,
        workers=0,
        worker_concurrency=1,
        var_dir=directory / "cluster",
        state_file=directory / "cluster" / "cluster.json",
        haproxy=HAPROXY,
    )
    cluster.var_dir.mkdir()
    fronts: list[Front] = []
    try:
        env = script.server_env(cluster, _server_base_env())
        processes = script.web_start(cluster, env)
        script.web_wait(cluster, processes)
        urls = {"direct": f"http://127.0.0.1:{processes[0].port}"}
        if args.front == "haproxy":
            script.front_start(cluster, env, processes)
            urls["haproxy"] = cluster.url
        token = _renter_token()
        for name, url in urls.items():
            session = requests.Session()
            session.headers["Authorization"] = f"Token {token}"
            front = Front(name, url, session, directory / name)
            front.directory.mkdir()
            fronts.append(front)
            _agent_start(front, args.image)
        wait_until(lambda: all(_online(f.host_id) for f in fronts), "the agents online")
        bare: list[float] = []
        load_before = os.getloadavg()
        for round_number in range(WARM_UP + args.jobs):
            measured = round_number >= WARM_UP
            for front in fronts if round_number % 2 == 0 else fronts[::-1]:
                _job_run(front, fronts, measured)
            if measured:
                bare.append(_docker_run(args.image))
        _report(args, web, fronts, bare, (load_before, os.getloadavg()))
        return 0
    except script.ClusterFailed as exc:
        raise SystemExit(f"bench.dispatch: {exc}") from None
    finally:
        for front in fronts:
            if front.agent is not None:
                front.agent.send_signal(signal.SIGTERM)
                front.agent.wait(60)
        script.children_stop(cluster)


def _server_base_env() -> dict[str, str]:
    """The caller's environment for the cluster's settings, on the scratch database; DEBUG
    (which a test shell sets) is left to the production default, off."""
    from django.db import connection

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    url = f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE")}
    return {**base, "DATABASE_URL": url, "HOST_HEARTBEAT_SECONDS": "5"}


def _renter_token() -> str:
    """A funded renter's API token."""
    from accounts.models import User
    from accounts.services import api_token_create
    from config.transactions import durable_call
    from ledger.services import wallet_credit

    suffix = secrets.token_hex(4)
    renter = User.objects.create_user(username=f"renter-{suffix}", email=f"r{suffix}@bench.invalid")
    durable_call(
        wallet_credit,
        user=renter,
        amount_micros=10**12,
        key=f"bench-{suffix}",
        reason="bench",
        source="purchase",
    )
    _, plaintext = api_token_create(user=renter, name="bench")
    return plaintext


def _agent_start(front: Front, image: str) -> None:
    """An owner's host enrolled through ``front`` and its agent running (Docker job manager)."""
    from accounts.models import User
    from hosts.models import Host
    from hosts.services import enrollment_create

    suffix = secrets.token_hex(4)
    owner = User.objects.create_user(username=f"owner-{suffix}", email=f"o{suffix}@bench.invalid")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMMUNIPUTE_")},
        "PYTHONPATH": str(ROOT),
        "COMMUNIPUTE_AGENT_CONFIG": str(front.directory / "agent.json"),
        "COMMUNIPUTE_WORK_DIR": str(front.directory / "work"),
        "COMMUNIPUTE_RUNNER_IMAGE": image,
        "COMMUNIPUTE_JOB_MANAGER": "docker",
        "COMMUNIPUTE_LOG_LEVEL": "INFO",
    }
    if CA_BUNDLE.is_file():
        env["COMMUNIPUTE_PIP_CERT"] = str(CA_BUNDLE)
    token = enrollment_create(owner=owner).token
    subprocess.run(
        [sys.executable, "-m", "agent.cli", "enroll", "--server", front.url, "--token", token],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    front.host_id = Host.objects.get(owner=owner).pk
    front.agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run"],
        cwd=ROOT,
        env=env,
        stdout=front.agent_log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _job_run(front: Front, fronts: Sequence[Front], measured: bool) -> None:
    """Submit one job through ``front`` to its host and wait for its end."""
    from hosts.models import Host
    from jobs.models import Job

    Host.objects.filter(pk__in=[f.host_id for f in fronts if f is not front]).update(**DEAR)
    Host.objects.filter(pk=front.host_id).update(**CHEAP)
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
    response = front.renter.post(f"{front.url}/api/v1/jobs/", json=body, timeout=30)
    answered = time.time()
    if response.status_code != 201:
        raise SystemExit(f"submit failed: {response.status_code} {response.content[:300]!r}")
    job_id = int(response.json()["id"])
    final = {"succeeded", "failed", "cancelled", "timed_out", "budget_exhausted"}
    wait_until(lambda: Job.objects.get(pk=job_id).status in final, f"job {job_id}", timeout=300)
    job = Job.objects.get(pk=job_id)
    if job.status != "succeeded":
        raise SystemExit(f"job {job_id} ended {job.status}: {job.status_reason}")
    if job.host_id != front.host_id:
        raise SystemExit(f"job {job_id} ran on host {job.host_id}, not {front.name}'s")
    if measured:
        front.submitted[job_id] = started
        front.answered[job_id] = answered


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
    web: int,
    fronts: Sequence[Front],
    bare: list[float],
    loads: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> None:
    from jobs.models import JobAttempt

    behind = f", HAProxy in front of {web} daphne" if args.front == "haproxy" else ""
    print(
        f"{args.jobs} jobs per front through daphne{behind} and the real agent (Docker job "
        f"manager, image {args.image}, cached environment {REQUIREMENT}), in rounds with a "
        "bare docker run each:"
    )
    for front in fronts:
        accepted = _accept_times(front.agent_log)
        to_offer = [(accepted[job] - started) * 1000 for job, started in front.submitted.items()]
        to_answer = [
            (front.answered[job] - started) * 1000 for job, started in front.submitted.items()
        ]
        to_written, to_running = [], []
        attempts = JobAttempt.objects.filter(job_id__in=front.submitted)
        for job, offered, running in attempts.values_list("job_id", "offered_at", "started_at"):
            assert running is not None, "a job that succeeded was running"
            to_written.append((offered.timestamp() - front.submitted[job]) * 1000)
            to_running.append((running - offered).total_seconds() * 1000)
        print(f"  {front.name} ({front.url}):")
        for name, values in (
            ("POST -> offer written (its attempt's row)", to_written),
            ("POST answered", to_answer),
            ("submit -> offer at the agent", to_offer),
            ("offer -> running", to_running),
        ):
            print(f"    {name}: {_figures(values)}")
    print(f"  bare docker run --rm {args.image} python3 -c pass: {_figures(bare, 1000)}")
    before, after = (" / ".join(f"{v:.2f}" for v in load) for load in loads)
    print(f"  load average (1 / 5 / 15 min): {before} before the rounds, {after} after")


def _figures(values: list[float], scale: float = 1) -> str:
    scaled = [v * scale for v in values]
    return (
        f"p50 {_percentile(scaled, 50):.0f} ms, p99 {_percentile(scaled, 99):.0f} ms, "
        f"max {max(scaled):.0f} ms"
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
