"""Usage reports per second through the real agent socket, and what they are charged.

N simulated agents (default 200), each an enrolled host with a credential and a running job
attempt (made directly with the services), connect over real websockets to a daphne subprocess
on loopback (PostgreSQL, Redis channel layer), say ``hello`` with their attempt, and report
cumulative usage (``job.usage``). Meanwhile a second subprocess runs the batch poster
(``jobs.billing.usage_charges_post``) every ``--post-interval`` seconds, as Celery beat would.

Two phases, each ``--seconds`` long after a short warm-up:

- **target**: open loop, the agents together send ``--rate`` reports per second (each agent
  every agents/rate seconds, at its own phase), whatever the answers do;
- **saturation**: closed loop, each agent sends its next report as soon as the last one is
  acknowledged: the most the server takes.

It prints, per phase, the reports acknowledged per second and p50/p99/max of the time from
sending a report to receiving its ``usage.ack``; the poster's batches (charges per batch, time
per batch); the load average; and beside them two baselines from the same run: the ledger's
own charge rate (``bench.ledger``, one ``hold_capture`` per charge), and **the bare statement
on plain psycopg** — once the servers have stopped, this process runs the fast path's own
statement (``jobs.services.usage.fast_sql``, the same parameters) for ``--plain-seconds`` on
one autocommit psycopg connection, one report per statement, closed loop, over attempts of
its own: its rate, and this process's CPU per statement, which the daphne CPU per report is
set against (issue 17: at most twice it; saturation at least half its rate). At the end it
charges what is left and checks, for every attempt (the baseline's too), that the charges
equal the cost of the last acknowledged counters exactly, the job's cost and the ledger agree,
and the reconciliation is clean.

Run: ``python -m bench.ingest [--agents N] [--rate R] [--seconds S]``; needs PostgreSQL
(``DATABASE_URL``) and Redis (``REDIS_URL``). It uses a scratch database and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench._django import django_setup, scratch_database

ROOT = Path(__file__).resolve().parent.parent
# 1 µcr per CPU-millisecond and, for 512 MB reserved, half a µcr per wall millisecond: the
# expected cost is cpu_ms + wall_ms // 2, computed here without jobs.metering.
RATES = {"cpu_core_hour_micros": 3_600_000, "memory_gb_hour_micros": 3_600_000}
CAP = 50_000_000
PLAIN_ATTEMPTS = 20  # the baseline's own attempts (the agents' counters stay theirs)


def expected_cost(cpu_ms: int, wall_ms: int) -> int:
    return cpu_ms + wall_ms // 2


@dataclass(frozen=True)
class Agent:
    host_id: int
    credential: str
    job_id: int


@dataclass
class Counters:
    """What one simulated agent sent and had acknowledged."""

    seq: int = 0
    started: float = field(default_factory=time.monotonic)
    sent_at: dict[int, float] = field(default_factory=dict)
    sent: dict[int, tuple[int, int]] = field(default_factory=dict)
    acked: tuple[int, int, int] = (0, 0, 0)  # seq, cpu_ms, wall_ms

    def next_report(self, job_id: int) -> dict[str, Any]:
        self.seq += 1
        wall_ms = int((time.monotonic() - self.started) * 1000)
        cpu_ms = wall_ms * 3 // 2  # 1.5 of the 2 cores busy
        self.sent[self.seq] = (cpu_ms, wall_ms)
        return {
            "job_id": job_id,
            "attempt": 1,
            "seq": self.seq,
            "cpu_seconds": cpu_ms / 1000,
            "wall_seconds": wall_ms / 1000,
            "memory_peak_mb": 200,
            "memory_current_mb": 150,
            "gpu_seconds": 0.0,
        }


@dataclass
class Phase:
    name: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    acked: int = 0
    errors: list[str] = field(default_factory=list)
    server_cpu: float = 0.0  # CPU seconds the daphne processes used in the measured window
    poster_cpu: float = 0.0  # the poster process
    client_cpu: float = 0.0  # this process: the simulated agents


# --- set-up (in the bench process, on the scratch database) -----------------------------------


def _fixture(agents: int) -> list[Agent]:
    """``agents`` hosts of 10 owners, each enrolled with a credential and running one job."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from accounts.models import User
    from config.transactions import durable_call
    from hosts.models import Host, HostStatus
    from hosts.services import enrollment_create, host_register
    from jobs.models import Job, JobAttempt
    from jobs.services.attempts import attempt_accept, attempt_start
    from jobs.services.submit import job_submit
    from ledger.services import wallet_credit

    renter = User.objects.create_user(username="ingest-renter", email="renter@bench.invalid")
    durable_call(
        wallet_credit, user=renter, amount_micros=CAP * agents, key="bench:buy", reason="bench"
    )
    owners = [
        User.objects.create_user(username=f"ingest-owner-{n}", email=f"o{n}@bench.invalid")
        for n in range(10)
    ]
    made: list[Agent] = []
    for n in range(agents):
        token = enrollment_create(owner=owners[n % len(owners)], name=f"bench-{n}").token
        registered = host_register(enrollment_token=token, specs=_specs())
        Host.objects.filter(pk=registered.host.pk).update(
            status=HostStatus.ONLINE, last_seen_at=timezone.now(), **RATES
        )
        job = job_submit(owner=renter, submission=_submission(registered.host.pk, Decimal(2)))
        attempt = JobAttempt.objects.get(job=job, number=1)
        attempt_accept(attempt)
        attempt_start(attempt, "running")
        made.append(Agent(registered.host.pk, registered.credential, job.pk))
    # Reports of wall time since the start of the run are then well within the server's clock.
    JobAttempt.objects.update(started_at=timezone.now() - timedelta(hours=1))
    assert Job.objects.filter(status="running").count() == agents
    return made


def _specs() -> dict[str, Any]:
    return {
        "cpu_model": "bench",
        "arch": "x86_64",
        "cpus": 4,
        "memory_mb": 8192,
        "disk_free_mb": 100_000,
        "os": "linux",
        "os_version": "bench",
        "gpus": [],
        "docker_available": True,
    }


def _submission(host_id: int, cpus: Any) -> Any:
    from jobs.validation import JobSubmission

    return JobSubmission(
        entrypoint=None,
        requirements=[],
        cpus=cpus,
        memory_mb=512,
        gpus=0,
        timeout_seconds=3600,
        max_cost_micros=CAP,
        host_id=host_id,
        code="print('bench')",
    )


# --- the agents (asyncio websockets) ------------------------------------------------------------


class Link:
    def __init__(self, agent: Agent, port: int) -> None:
        self.agent = agent
        self.port = port
        self.counters = Counters()
        self.ws: Any = None
        self.acked_event = asyncio.Event()
        self.phase: Phase | None = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        from agent.protocol import PROTOCOL_VERSION, encode

        self.ws = await connect(
            f"ws://127.0.0.1:{self.port}/ws/agent/",
            additional_headers={"Authorization": f"Bearer {self.agent.credential}"},
            open_timeout=60,
            ping_interval=None,
        )
        hello = {
            "agent_version": "bench",
            "protocol_version": PROTOCOL_VERSION,
            "specs": _specs(),
            "running_jobs": [{"job_id": self.agent.job_id, "attempt": 1}],
            "is_available": True,
            "is_draining": False,
        }
        await self.ws.send(encode("hello", hello))
        while json.loads(await self.ws.recv())["type"] != "welcome":
            pass
        asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message["type"] == "usage.ack":
                self._on_ack(message["data"])
            elif message["type"] == "error" and self.phase is not None:
                self.phase.errors.append(message["data"]["message"])

    def _on_ack(self, data: dict[str, Any]) -> None:
        now = time.monotonic()
        seq = data["seq"]
        sent_at = self.counters.sent_at.pop(seq, None)
        if seq > self.counters.acked[0]:
            cpu_ms, wall_ms = self.counters.sent[seq]
            self.counters.acked = (seq, cpu_ms, wall_ms)
        if sent_at is not None and self.phase is not None:
            self.phase.latencies.append(now - sent_at)
            self.phase.acked += 1
        self.acked_event.set()

    async def drain(self, seconds: float) -> None:
        """Wait until every report sent was answered (at most ``seconds``)."""
        deadline = time.monotonic() + seconds
        while self.counters.sent_at and time.monotonic() < deadline:
            self.acked_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.acked_event.wait(), deadline - time.monotonic())

    async def send_report(self) -> None:
        from agent.protocol import encode

        report = self.counters.next_report(self.agent.job_id)
        self.counters.sent_at[report["seq"]] = time.monotonic()
        await self.ws.send(encode("job.usage", report))


async def _open_loop(links: list[Link], rate: float, until: float) -> None:
    period = len(links) / rate

    async def one(link: Link, offset: float) -> None:
        next_at = time.monotonic() + offset
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await link.send_report()
            next_at += period

    rng = random.Random(7)
    await asyncio.gather(*(one(link, rng.uniform(0, period)) for link in links))


async def _closed_loop(links: list[Link], until: float) -> None:
    async def one(link: Link) -> None:
        while time.monotonic() < until:
            link.acked_event.clear()
            await link.send_report()
            try:
                await asyncio.wait_for(link.acked_event.wait(), 10)
            except TimeoutError:
                return

    await asyncio.gather(*(one(link) for link in links))


def _cpu_seconds(process: psutil.Process) -> float:
    """CPU time of a process and its children (daphne may run under py-spy)."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = each.cpu_times()
            total += times.user + times.system
    return total


@dataclass(frozen=True)
class Watched:
    servers: list[psutil.Process]
    poster: psutil.Process

    def cpu(self) -> tuple[float, float, float]:
        servers = sum(_cpu_seconds(server) for server in self.servers)
        return servers, _cpu_seconds(self.poster), time.process_time()


async def _run_phase(
    links: list[Link], phase: Phase, rate: float | None, warmup: float, watched: Watched
) -> None:
    """Drive the agents for warm-up + the phase; count only answers inside the window."""
    until = time.monotonic() + warmup + phase.seconds

    async def measured() -> None:
        await asyncio.sleep(warmup)
        for link in links:
            link.phase = phase
        before = watched.cpu()
        await asyncio.sleep(phase.seconds)
        for link in links:
            link.phase = None
        after = watched.cpu()
        phase.server_cpu, phase.poster_cpu, phase.client_cpu = (
            end - start for start, end in zip(before, after, strict=True)
        )

    measuring = asyncio.create_task(measured())
    if rate is not None:
        await _open_loop(links, rate, until)
    else:
        await _closed_loop(links, until)
    await measuring
    # Every answer in before the next phase: an overloaded phase leaves no backlog behind.
    await asyncio.gather(*(link.drain(60) for link in links))


async def _drive(
    agents: list[Agent], ports: list[int], args: argparse.Namespace, watched: Watched
) -> tuple[list[Phase], dict[int, Counters]]:
    """Both phases; returns them and, per job, what its agent sent and had acknowledged. The
    agents spread over the servers' ports in turn."""
    links = [Link(agent, ports[n % len(ports)]) for n, agent in enumerate(agents)]
    for start in range(0, len(links), 20):
        await asyncio.gather(*(link.open() for link in links[start : start + 20]))
    phases = [Phase("target", args.seconds), Phase("saturation", args.seconds)]
    await _run_phase(links, phases[0], args.rate, args.warmup, watched)
    await _run_phase(links, phases[1], None, args.warmup, watched)
    await asyncio.gather(*(link.drain(30) for link in links))
    for link in links:
        await link.ws.close()
    return phases, {link.agent.job_id: link.counters for link in links}


# --- processes --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("daphne did not start")


def _env(database: str) -> dict[str, str]:
    from django.db import connection

    settings = connection.settings_dict
    url = (
        f"postgres://{settings['USER']}:{settings['PASSWORD'] or ''}@{settings['HOST']}:"
        f"{settings['PORT'] or 5432}/{database}"
    )
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        "DEBUG": "0",
        "PYTHONPATH": str(ROOT),
    }


def _start(command: list[str], env: dict[str, str], log: Any, stdout: Any = None) -> Any:
    # A session of its own: a signal to the group reaches py-spy and what it runs.
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log if stdout is None else stdout,
        stderr=log if stdout is not None else subprocess.STDOUT,
        text=stdout is not None,
        start_new_session=True,
    )


def _profiler(output: str) -> list[str]:
    return ["py-spy", "record", "--format", "raw", "-r", "250", "-o", output, "--"]


def _poster_loop(interval: float) -> None:
    """The poster subprocess: usage_charges_post every ``interval`` s until SIGTERM; prints
    its batches as JSON lines on the way out."""
    django_setup()
    from jobs.billing import usage_charges_post

    batches: list[tuple[int, float]] = []
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # under py-spy, which passes SIGINT on
    next_at = time.monotonic()
    while not stopping:
        started = time.perf_counter()
        posted = usage_charges_post(limit=10_000)
        batches.append((posted.posted, time.perf_counter() - started))
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    print(json.dumps(batches), flush=True)


# --- checks and report --------------------------------------------------------------------------


def _check_exact(agents: Sequence[Agent], sent: dict[int, Counters]) -> int:
    """Charge what is left, then check every attempt: its latest counters are those of the last
    report its agent had acknowledged (or a later one it sent), and its charges — on the
    attempt, on the job and in the ledger — are exactly their cost. Returns attempts checked."""
    from django.db.models import Sum

    from jobs.billing import usage_charges_post
    from jobs.models import Job, JobAttempt
    from jobs.selectors import job_facts
    from ledger.models import Posting
    from ledger.services import ledger_reconcile

    usage_charges_post(limit=10_000)
    captured = dict(
        Posting.objects.filter(transaction__kind="capture", account__kind="escrow")
        .values_list("transaction__job_id")
        .annotate(total=Sum("amount_micros"))
    )
    problems = []
    for agent in agents:
        attempt = JobAttempt.objects.get(job_id=agent.job_id, number=1)
        counters = sent[agent.job_id]
        cpu_ms, wall_ms = counters.sent[attempt.usage_seq]
        expected = expected_cost(cpu_ms, wall_ms)
        figures = (
            attempt.usage_seq >= counters.acked[0],
            (attempt.usage_cpu_ms, attempt.usage_wall_ms),
            attempt.charged_micros,
            Job.objects.get(pk=agent.job_id).cost_micros,
            -int(captured.get(agent.job_id, 0)),
        )
        if figures != (True, (cpu_ms, wall_ms), expected, expected, expected):
            problems.append(f"job {agent.job_id}: {figures}, expected {expected}")
    report = ledger_reconcile(job_facts=job_facts)
    if problems or not report.is_clean:
        raise SystemExit(f"charges are not exact: {problems[:5]} {report.problems[:5]}")
    return len(agents)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _print_phase(phase: Phase, rate: float | None) -> None:
    ms = [v * 1000 for v in phase.latencies]
    asked = f"open loop, {rate:,.0f}/s asked" if rate else "closed loop"
    per_report = phase.server_cpu / phase.acked * 1e6 if phase.acked else 0.0
    print(
        f"{phase.name} ({asked}): {phase.acked / phase.seconds:,.0f} reports/s acknowledged; "
        f"send->usage.ack p50 {_percentile(ms, 0.5):.1f} ms, p99 {_percentile(ms, 0.99):.1f} ms,"
        f" max {max(ms, default=0):.1f} ms; errors {len(phase.errors)}\n"
        f"    CPU, in cores: daphne {phase.server_cpu / phase.seconds:.2f} "
        f"({per_report:,.0f} µs per report), poster {phase.poster_cpu / phase.seconds:.2f}, "
        f"simulated agents {phase.client_cpu / phase.seconds:.2f}"
    )


def _ledger_rate(charges: int) -> float:
    from bench import ledger as ledger_bench

    with scratch_database("bench_ledger"):
        _raw, service, _statements = ledger_bench.measure(charges, 50, 10, 1, 1)
    return service.rate


@dataclass(frozen=True)
class Plain:
    """The bare statement on plain psycopg (the baseline)."""

    statements: int
    seconds: float
    cpu: float  # this process's CPU seconds over them
    refused: int  # statements that did not take their report (there should be none)

    @property
    def rate(self) -> float:
        return self.statements / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_statement(self) -> float:
        return self.cpu / self.statements if self.statements else 0.0


def _plain_psycopg(agents: Sequence[Agent], seconds: float) -> tuple[Plain, dict[int, Counters]]:
    """The fast path's statement, as the agent socket runs it, straight on psycopg: one
    connection, autocommit, one report per statement, each agent's counters in turn."""
    import psycopg
    from django.db import connections

    from jobs.services.usage import fast_params, fast_sql

    settings = connections["default"].get_connection_params()
    conninfo = {
        k: settings[k] for k in ("dbname", "user", "password", "host", "port") if k in settings
    }
    counters = {agent.job_id: Counters() for agent in agents}
    statements = refused = 0
    with psycopg.connect(**conninfo, autocommit=True) as link, link.cursor() as cursor:
        cpu_before, started = time.process_time(), time.monotonic()
        until = started + seconds
        while time.monotonic() < until:
            for agent in agents:
                sent = counters[agent.job_id]
                report = sent.next_report(agent.job_id)
                params = fast_params(agent.host_id, report)  # type: ignore[arg-type]
                assert params is not None
                cursor.execute(fast_sql(params), params)
                if cursor.fetchone() is None:
                    refused += 1
                else:
                    sent.acked = (report["seq"], *sent.sent[report["seq"]])
                statements += 1
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_before
    return Plain(statements, elapsed, cpu, refused), counters


@dataclass(frozen=True)
class Measured:
    phases: list[Phase]
    batches: list[tuple[int, float]]  # per poster run: charges posted, seconds
    checked: int  # attempts whose charges were checked exact
    load: tuple[float, float, float]
    plain: Plain


def measure(args: argparse.Namespace, database: str) -> Measured:
    """One run on ``database`` (already migrated, committed data visible to subprocesses)."""
    everyone = _fixture(args.agents + PLAIN_ATTEMPTS)
    agents, own = everyone[: args.agents], everyone[args.agents :]
    env, ports = _env(database), [_free_port() for _ in range(args.servers)]
    interval = str(args.post_interval)
    posting = [sys.executable, "-m", "bench.ingest", "--poster", "--post-interval", interval]
    daphne = [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1"]
    servers = [[*daphne, "-p", str(port), "config.asgi:application"] for port in ports]
    if args.profile:
        # py-spy (not a requirement: pip install it to profile) samples the processes.
        servers = [
            [*_profiler(f"{args.profile}-daphne{n}.txt"), *server]
            for n, server in enumerate(servers)
        ]
        posting = [*_profiler(f"{args.profile}-poster.txt"), *posting]
    with tempfile.TemporaryDirectory() as tmp, Path(tmp, "daphne.log").open("wb") as log:
        daphnes = [_start(server, env, log) for server in servers]
        poster = _start(posting, env, log, stdout=subprocess.PIPE)
        try:
            for port in ports:
                _wait_listening(port)
            watched = Watched([psutil.Process(d.pid) for d in daphnes], psutil.Process(poster.pid))
            phases, acked = asyncio.run(_drive(agents, ports, args, watched))
            load = os.getloadavg()
        finally:
            # py-spy writes its profile on SIGINT.
            stop = signal.SIGINT if args.profile else signal.SIGTERM
            os.killpg(poster.pid, stop)
            batches_out, _ = poster.communicate(timeout=60)
            for server in daphnes:
                os.killpg(server.pid, stop)
                server.wait(60)
    # The poster's last line (py-spy, when profiling, writes lines of its own).
    lines = [line for line in (batches_out or "").splitlines() if line.startswith("[")]
    batches = [(int(n), float(t)) for n, t in json.loads(lines[-1] if lines else "[]")]
    plain, plain_sent = _plain_psycopg(own, args.plain_seconds)
    checked = _check_exact(everyone, {**acked, **plain_sent})
    return Measured(phases, batches, checked, load, plain)


def _report(args: argparse.Namespace, measured: Measured, ledger_rate: float) -> None:
    load = measured.load
    print(
        f"ingest: {args.agents} agents over websockets to {args.servers} daphne process(es) "
        f"(PostgreSQL, Redis channel layer) on {os.cpu_count()} CPUs; load average at the end "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    _print_phase(measured.phases[0], args.rate)
    _print_phase(measured.phases[1], None)
    busy = [b for b in measured.batches if b[0]]
    if busy:
        per_batch = statistics.mean(b[0] for b in busy)
        seconds = statistics.mean(b[1] for b in busy)
        print(
            f"batch poster every {args.post_interval:g} s: {len(busy)} batches, "
            f"{per_batch:,.0f} charges per batch in {seconds * 1000:,.0f} ms "
            f"= {per_batch / seconds:,.0f} charges/s while posting"
        )
    print(f"ledger (bench.ledger: hold_capture, a commit per charge): {ledger_rate:,.0f} charges/s")
    plain, saturation = measured.plain, measured.phases[1]
    per_statement = plain.cpu_per_statement * 1e6
    print(
        f"plain psycopg (the fast path's statement, one connection, closed loop): "
        f"{plain.rate:,.0f} statements/s, {per_statement:,.0f} µs of CPU per statement; "
        f"refused {plain.refused}"
    )
    for phase in measured.phases:
        if phase.acked and per_statement:
            per_report = phase.server_cpu / phase.acked * 1e6
            print(
                f"    {phase.name}: daphne CPU per report / plain CPU per statement = "
                f"{per_report / per_statement:.1f} times (target: at most 2)"
            )
    if plain.rate:
        print(
            "    saturation rate / plain rate = "
            f"{saturation.acked / saturation.seconds / plain.rate:.2f} (target: at least 0.5)"
        )
    print(
        f"exact: {measured.checked} attempts charged exactly the cost of their last "
        "acknowledged report"
    )


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1000.0, help="reports/s, target phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="each phase, measured")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--servers", type=int, default=1, help="daphne processes")
    parser.add_argument("--post-interval", type=float, default=1.0)
    parser.add_argument("--ledger-charges", type=int, default=2000)
    parser.add_argument(
        "--plain-seconds", type=float, default=5.0, help="the plain psycopg baseline, seconds"
    )
    parser.add_argument(
        "--profile", help="record daphne and the poster with py-spy: PROFILE-{daphne,poster}.txt"
    )
    parser.add_argument("--poster", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    if args.poster:
        _poster_loop(args.post_interval)
        return 0
    django_setup()
    from django.conf import settings

    if not settings.IS_POSTGRES or not settings.REDIS_URL:
        print("ingest: skipped, needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")
        return 0
    ledger_rate = _ledger_rate(args.ledger_charges)
    with scratch_database("bench_ingest") as database:
        measured = measure(args, database)
    _report(args, measured, ledger_rate)
    errors = [e for phase in measured.phases for e in phase.errors]
    if errors:
        print(f"errors from the server: {errors[:3]}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
