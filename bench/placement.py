"""Placement: jobs per second placed and started from a queue, on hosts of several slots beside
the same hosts running one job each, in the same run.

    python -m bench.placement [--hosts 50] [--slots 4] [--jobs 500] [--rounds 1]

On PostgreSQL (``DATABASE_URL``), in a scratch database dropped afterwards. Each run enrolls
``--hosts`` hosts (8 cores, 16 GB; 10 owners, prices a little apart), connects them (``hello``)
and submits ``--jobs`` auto-placed jobs of 2 CPUs and 2 GB through ``job_submit`` with its
immediate offer left out, so that they wait queued; the hosts then drop their sockets
(``disconnect_accept``). The measured part starts when they come back: each says ``hello``
again (``hello_accept``: the presence update and ``capacity_offer``), and simulated agents, in
this process and one thread, answer every offer as the real agent does, through the handlers
the socket calls, each message one durable transaction (``durable_call``): ``job.accept``,
``job.started`` preparing, ``job.started`` running, and a heartbeat every
``HOST_HEARTBEAT_SECONDS`` with what it runs; with every slot taken, the host that has
run a job longest reports it ``job.finished`` (succeeded, no usage), which frees the slot and
offers the next queued job (``capacity_offer``). It ends when the last job is running.

- **placed and started per second**: jobs / seconds from the first hello to the last job's
  ``running``; every offer, accept, start and the finishes that freed the slots are in it.
- queries/job and CPU ms/job: the statements, and this process's CPU, per job (the figures to
  compare on a shared machine, where seconds are at the mercy of other work).
- the same hosts advertising one slot (``slots=1``, one job per host) are the baseline; the
  ratio is multi-slot / baseline (starting 500 jobs on 200 slots takes 300 finishes, on 50
  slots 450, so the multi-slot run has less to do per job: a ratio of 1 would mean slots cost
  more).
- where the time went: inclusive time and calls of the placement functions (``job_offer_next``,
  ``capacity_offer``, ``placement_candidates``, ``candidates_loaded``, ``hosts_rank``) and of
  each message, and one reaper pass over the queue (``jobs_reap_pass``: ``jobs_queued``'s
  batch through ``job_offer_next``) while every slot is taken.

The offers reach the simulated agents in process (``jobs.agent_link.agent_send`` and the
renter's job events are recorded, not sent through the channel layer: ``bench.dispatch`` and
``bench.ingest`` measure that part).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bench._django import django_setup, scratch_database

if TYPE_CHECKING:
    from agent.protocol import Hello, HostSpecs

HOST_CPUS, HOST_MEMORY_MB = 8, 16384
JOB_CPUS, JOB_MEMORY_MB = 2, 2048
CAP = 1_000_000
OWNERS = 10

# (module, attribute) pairs timed, by the name they are reported under. A function is patched
# in every module that calls it by its global name.
_TIMED: dict[str, list[str]] = {
    "job_offer_next": [
        "jobs.services.dispatch",
        "jobs.services.attempts",
        "jobs.services.submit",
        "jobs.tasks",
    ],
    "capacity_offer": [
        "jobs.services.dispatch",
        "jobs.services.attempts",
        "jobs.services.cancel",
        "jobs.agent_socket",
    ],
    "placement_candidates": ["jobs.services.dispatch"],
    "candidates_loaded": ["jobs.services.dispatch"],
    "hosts_rank": ["jobs.services.dispatch"],
}


@dataclass
class Calls:
    """Calls and inclusive seconds of each timed function or message."""

    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def ms_per_call(self, name: str) -> float:
        return self.seconds.get(name, 0.0) * 1000 / max(1, self.calls.get(name, 0))


@dataclass
class Run:
    slots: int
    hosts: int
    jobs: int
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of which this process (Django, the services, the agents) ran
    queries: int = 0
    calls: Calls = field(default_factory=Calls)
    reap_seconds: float = 0.0
    reap_jobs: int = 0
    reap_queries: int = 0
    most_at_once: int = 0  # jobs running at once, at the most

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


@dataclass
class Agents:
    """The simulated agents: the offers pushed to them, and what each runs."""

    offers: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)
    running: deque[tuple[int, int, int]] = field(default_factory=deque)  # host, job, attempt

    def send(self, host_id: int, kind: str, data: Any) -> None:
        if kind == "job.offer":
            self.offers.append((host_id, dict(data)))


@contextmanager
def _patched(attributes: dict[tuple[str, str], Any]) -> Iterator[None]:
    import importlib

    saved = []
    for (module_name, name), value in attributes.items():
        module = importlib.import_module(module_name)
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)


def _timed(calls: Calls) -> dict[tuple[str, str], Any]:
    import importlib

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                calls.add(name, time.perf_counter() - started)

        return timed

    patches: dict[tuple[str, str], Any] = {}
    for name, modules in _TIMED.items():
        original = getattr(importlib.import_module(modules[0]), name)
        wrapped = wrap(name, original)
        for module in modules:
            patches[(module, name)] = wrapped
    return patches


@contextmanager
def _counting() -> Iterator[list[int]]:
    from django.db import connection

    count = [0]

    def count_query(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        count[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_query):
        yield count


def _envelope(message_type: str, data: dict[str, Any]) -> Any:
    from agent.protocol import encode, new_id

    return json.loads(encode(message_type, data, new_id()))


def _hello(slots: int) -> Hello:
    from agent.protocol import PROTOCOL_VERSION

    return {
        "agent_version": "0.1.0",
        "protocol_version": PROTOCOL_VERSION,
        "specs": _specs(),
        "running_jobs": [],
        "is_available": True,
        "is_draining": False,
        "slots": slots,
        "readiness": {"ready": True, "reason": "", "isolation": "docker"},
    }


def _specs() -> HostSpecs:
    return {
        "cpu_model": "bench",
        "arch": "x86_64",
        "cpus": HOST_CPUS,
        "memory_mb": HOST_MEMORY_MB,
        "disk_free_mb": 100_000,
        "os": "linux",
        "os_version": "bench",
        "gpus": [],
        "docker_available": True,
    }


def _fixture(tag: str, hosts: int, jobs: int, slots: int) -> list[int]:
    """``hosts`` enrolled hosts (offline, their sockets dropped) and ``jobs`` queued jobs."""
    from accounts.models import User
    from config.transactions import durable_call
    from hosts.models import Host
    from hosts.services import enrollment_create, host_connect, host_register
    from jobs.agent_socket import disconnect_accept, hello_accept
    from jobs.models import Job, JobStatus
    from jobs.services.submit import job_submit
    from jobs.validation import JobSubmission
    from ledger.services import wallet_credit

    renter = User.objects.create_user(username=f"{tag}-renter", email=f"{tag}@bench.invalid")
    durable_call(
        wallet_credit, user=renter, amount_micros=CAP * jobs, key=f"{tag}:buy", reason="bench"
    )
    owners = [
        User.objects.create_user(username=f"{tag}-owner-{n}", email=f"{tag}{n}@bench.invalid")
        for n in range(OWNERS)
    ]
    host_ids = []
    for n in range(hosts):
        token = enrollment_create(owner=owners[n % OWNERS], name=f"{tag}-{n}").token
        host_id = host_register(enrollment_token=token, specs=_specs()).host.pk
        Host.objects.filter(pk=host_id).update(
            cpu_core_hour_micros=100_000 + 10 * n, memory_gb_hour_micros=10_000
        )
        seq = host_connect(host_id=host_id)
        durable_call(hello_accept, host_id, f"{tag}-setup-{host_id}", seq, _hello(slots))
        host_ids.append(host_id)
    submission = JobSubmission(
        entrypoint=None,
        requirements=[],
        cpus=Decimal(JOB_CPUS),
        memory_mb=JOB_MEMORY_MB,
        gpus=0,
        timeout_seconds=600,
        max_cost_micros=CAP,
        host_id=None,
        code="print('bench')",
    )
    # Submitted as the API would, but left queued: as if no host had had room for them.
    not_offered = {("jobs.services.submit", "job_offer_next"): lambda job_id, candidates: None}
    with _patched(not_offered):
        for _ in range(jobs):
            durable_call(job_submit, owner=renter, submission=submission)
    for host_id in host_ids:
        durable_call(disconnect_accept, host_id, f"{tag}-setup-{host_id}")
    assert Job.objects.filter(owner=renter, status=JobStatus.QUEUED).count() == jobs
    return host_ids


def _say(agents_calls: Calls, host_id: int, message_type: str, data: dict[str, Any]) -> Any:
    from config.transactions import durable_call
    from jobs.agent_messages import HANDLERS

    started = time.perf_counter()
    replies = durable_call(HANDLERS[message_type], host_id, _envelope(message_type, data))
    agents_calls.add(message_type, time.perf_counter() - started)
    errors = [data for kind, data in replies if kind == "error"]
    if errors:
        raise SystemExit(f"{message_type} from host {host_id} refused: {errors[0]}")
    return replies


def _finished(job_id: int, attempt: int) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "attempt": attempt,
        "status": "succeeded",
        "reason": "exit code 0",
        "exit_code": 0,
        "outputs": [],
        "usage": {
            "job_id": job_id,
            "attempt": attempt,
            "seq": 1,
            "cpu_seconds": 0.0,
            "wall_seconds": 0.0,
            "memory_peak_mb": 0,
            "memory_current_mb": 0,
            "gpu_seconds": 0.0,
            "is_final": True,
        },
    }


def measure_one(tag: str, hosts: int, jobs: int, slots: int) -> Run:
    """One run: ``jobs`` queued jobs through ``hosts`` hosts of ``slots`` slots each."""
    from config.transactions import durable_call
    from hosts.services import host_connect
    from jobs.agent_socket import hello_accept
    from jobs.models import Job, JobStatus
    from jobs.services.dispatch import _REAP_BATCH as REAP_BATCH
    from jobs.tasks import jobs_reap_pass

    run = Run(slots=slots, hosts=hosts, jobs=jobs)
    agents = Agents()
    recorders = {
        ("jobs.agent_link", "agent_send"): agents.send,
        ("jobs.events", "job_event_push"): lambda job_id, event: None,
        ("jobs.events", "job_events_push"): lambda pushes: None,
    }
    with _patched(recorders):
        host_ids = _fixture(tag, hosts, jobs, slots)
        with _patched(_timed(run.calls)), _counting() as queries:
            started_jobs = 0
            reaped = False
            began, began_cpu = time.perf_counter(), time.process_time()
            for host_id in host_ids:
                seq = host_connect(host_id=host_id)
                hello = _hello(slots)
                t = time.perf_counter()
                durable_call(hello_accept, host_id, f"{tag}-{host_id}", seq, hello)
                run.calls.add("hello", time.perf_counter() - t)
            beats = {host_id: time.monotonic() for host_id in host_ids}
            while started_jobs < jobs:
                _heartbeats_due(run.calls, tag, agents, beats)
                while agents.offers:
                    host_id, offer = agents.offers.popleft()
                    job, number = offer["job_id"], offer["attempt"]
                    ref = {"job_id": job, "attempt": number}
                    _say(run.calls, host_id, "job.accept", ref)
                    _say(run.calls, host_id, "job.started", {**ref, "phase": "preparing"})
                    _say(run.calls, host_id, "job.started", {**ref, "phase": "running"})
                    agents.running.append((host_id, job, number))
                    started_jobs += 1
                run.most_at_once = max(run.most_at_once, len(agents.running))
                if started_jobs >= jobs:
                    break
                if not reaped:
                    # Every slot taken, the rest of the queue waiting: one reaper tick.
                    run.seconds -= time.perf_counter()
                    run.cpu_seconds -= time.process_time()
                    before, kept = queries[0], (dict(run.calls.calls), dict(run.calls.seconds))
                    t = time.perf_counter()
                    report = jobs_reap_pass()
                    run.reap_seconds = time.perf_counter() - t
                    run.reap_queries = queries[0] - before
                    queries[0] = before
                    run.calls.calls, run.calls.seconds = kept
                    run.reap_jobs = min(jobs - started_jobs, REAP_BATCH)
                    assert report.jobs_offered == 0, "the reaper found a free slot"
                    run.seconds += time.perf_counter()
                    run.cpu_seconds += time.process_time()
                    reaped = True
                if not agents.running:
                    raise SystemExit("nothing runs and nothing was offered: placement stalled")
                host_id, job, number = agents.running.popleft()
                _say(run.calls, host_id, "job.finished", _finished(job, number))
            run.seconds += time.perf_counter() - began
            run.cpu_seconds += time.process_time() - began_cpu
            run.queries = queries[0]
    assert Job.objects.filter(owner__username=f"{tag}-renter", status=JobStatus.QUEUED).count() == 0
    _finish_all(run, agents)
    return run


def _heartbeats_due(calls: Calls, tag: str, agents: Agents, beats: dict[int, float]) -> None:
    """Each agent's heartbeat every HOST_HEARTBEAT_SECONDS, with what it runs, as the real agent
    sends it (``heartbeat_accept``: presence, then the leases): without them the hosts would
    go stale to placement after HOST_OFFLINE_AFTER_SECONDS and the leases would expire."""
    from django.conf import settings

    from config.transactions import durable_call
    from jobs.heartbeat_batch import heartbeat_accept

    due = time.monotonic() - settings.HOST_HEARTBEAT_SECONDS
    for host_id, last in beats.items():
        if last > due:
            continue
        running = [
            {"job_id": job, "attempt": number}
            for host, job, number in agents.running
            if host == host_id
        ]
        heartbeat = {
            "load": 0.5,
            "is_available": True,
            "unavailable_reason": "",
            "running_jobs": running,
        }
        started = time.perf_counter()
        replies = durable_call(
            heartbeat_accept, host_id, f"{tag}-{host_id}", _envelope("heartbeat", heartbeat)
        )
        if not isinstance(replies, list) or replies:
            raise SystemExit(f"heartbeat from host {host_id} answered {replies!r}")
        calls.add("heartbeat", time.perf_counter() - started)
        beats[host_id] = time.monotonic()


def _finish_all(run: Run, agents: Agents) -> None:
    """Finish what still runs and take the hosts offline (the next run has hosts of its own)."""
    from config.transactions import durable_call
    from hosts.models import Host
    from hosts.services import host_disconnect

    with _patched({("jobs.agent_link", "agent_send"): agents.send}):
        while agents.running:
            host_id, job, number = agents.running.popleft()
            _say(Calls(), host_id, "job.finished", _finished(job, number))
    for host_id, connection_id in Host.objects.filter(status__in=["online", "busy"]).values_list(
        "pk", "connection_id"
    ):
        durable_call(host_disconnect, host_id=host_id, connection_id=connection_id)


def measure(hosts: int, jobs: int, slots: int, rounds: int = 1) -> tuple[list[Run], list[Run]]:
    """Alternating rounds of the baseline (one slot per host) and ``slots`` slots."""
    baseline, multi = [], []
    for round_number in range(rounds):
        baseline.append(measure_one(f"r{round_number}s1", hosts, jobs, 1))
        multi.append(measure_one(f"r{round_number}s{slots}", hosts, jobs, slots))
    return baseline, multi


_BREAKDOWN = [
    "hello",
    "heartbeat",
    "job.accept",
    "job.started",
    "job.finished",
    "capacity_offer",
    "job_offer_next",
    "placement_candidates",
    "candidates_loaded",
    "hosts_rank",
]


def _report(baseline: list[Run], multi: list[Run], version: str) -> None:
    first = multi[0]
    print(
        f"placement: {first.jobs} queued jobs of {JOB_CPUS} CPUs / {JOB_MEMORY_MB} MB, "
        f"{first.hosts} hosts of {HOST_CPUS} cores / {HOST_MEMORY_MB} MB, {version}, "
        "simulated agents in one thread"
    )
    print(
        f"{'hosts':<28}{'jobs':>6}{'seconds':>9}{'placed+started/s':>18}{'queries/job':>13}"
        f"{'CPU ms/job':>12}{'at once':>9}"
    )
    for b, m in zip(baseline, multi, strict=True):
        for label, run in (("1 slot each (baseline)", b), (f"{m.slots} slots each", m)):
            print(
                f"{label:<28}{run.jobs:>6}{run.seconds:>9.2f}{run.rate:>18,.0f}"
                f"{run.queries / run.jobs:>13.1f}{run.cpu_seconds * 1000 / run.jobs:>12.1f}"
                f"{run.most_at_once:>9}"
            )
        print(
            f"{f'ratio {m.slots} slots / baseline':<43}{m.rate / b.rate:>18.2f}"
            f"{m.queries / b.queries:>13.2f}{m.cpu_seconds / b.cpu_seconds:>12.2f}"
        )
    print("where the time went (last round; inclusive ms per call x calls):")
    b, m = baseline[-1], multi[-1]
    for name in _BREAKDOWN:
        in_b, in_m = b.calls.calls.get(name, 0), m.calls.calls.get(name, 0)
        print(
            f"  {name:<22} baseline {b.calls.ms_per_call(name):7.2f} x {in_b:<5}"
            f" {m.slots} slots {m.calls.ms_per_call(name):7.2f} x {in_m}"
        )
    for run in (b, m):
        per_job = run.reap_seconds * 1000 / max(1, run.reap_jobs)
        print(
            f"  reaper pass, {run.slots} slot(s), every slot taken: {run.reap_jobs} queued jobs "
            f"through job_offer_next in {run.reap_seconds * 1000:.0f} ms "
            f"({per_job:.2f} ms and {run.reap_queries / max(1, run.reap_jobs):.1f} queries per job)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.placement", description=__doc__)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--slots", type=int, default=4, help="slots per host (beside 1)")
    parser.add_argument("--jobs", type=int, default=500, help="queued jobs per run")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    if args.slots * JOB_CPUS > HOST_CPUS:
        parser.error(f"--slots: a host of {HOST_CPUS} cores runs at most {HOST_CPUS // JOB_CPUS}")
    django_setup()
    from django.conf import settings
    from django.db import connection

    if not settings.IS_POSTGRES:
        print("placement: skipped, needs PostgreSQL (set DATABASE_URL)")
        return 0
    with scratch_database("bench_placement"):
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            row = cursor.fetchone()
        version = f"PostgreSQL {row[0].split()[0] if row else '?'}"
        baseline, multi = measure(args.hosts, args.jobs, args.slots, args.rounds)
        _report(baseline, multi, version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
