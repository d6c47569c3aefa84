"""Job groups: a 1,000-task group over 50 simulated multi-slot hosts beside 1,000 single jobs
on the same hosts, in the same run: the time to create the group, tasks placed and started per
second, and the scheduler's cost per task beside the single job's dispatch latency of today.

    python -m bench.groups [--hosts 50] [--slots 4] [--tasks 1000] [--singles 200]

On PostgreSQL (``DATABASE_URL``), in a scratch database dropped afterwards. ``--hosts`` hosts
(8 cores, 16 GB, ``--slots`` slots, prices a little apart, 10 owners) say ``hello``; simulated
agents in this process and one thread answer every offer through the handlers the agent socket
calls, each message one durable transaction, as in ``bench.placement``: ``job.accept``,
``job.started`` preparing and running, heartbeats every ``HOST_HEARTBEAT_SECONDS``, and with
every slot taken the longest-running job reports ``job.finished`` (succeeded, no usage), which
frees its slot. Requests go through the API in process (``APIClient``: the serializers, the
durable view, no network).

1. **Dispatch latency (baseline)**: ``--singles`` jobs, each ``POST /api/v1/jobs/`` onto a fleet
   with room (submit -> offered: validation, the job, its hold, its offer), each run and
   finished before the next.
2. **Throughput (baseline)**: ``--tasks`` single jobs submitted at once (the first ones offered,
   the rest queued), then run until the last is running: jobs placed and started per second;
   a freed slot offers the next queued job (``capacity_offer``).
3. **The group**: ``POST /api/v1/job-groups/`` of ``--tasks`` tasks (each with its argument),
   ``max_parallel`` = every slot: the creation's time (the checks, the task rows, and the first
   ``max_parallel`` tasks' jobs, holds and offers); then run as 2.: tasks placed and started
   per second; a settled task starts the next one (``group_task_settled``).

Per task the scheduler's cost is what a group adds to an ordinary job: ``_task_start`` (its
job made from the template, its argument's blob, its hold, its offer) in place of a submit, and
the group's bookkeeping when it settles (``group_task_settled`` less the task it starts).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench._django import django_setup, scratch_database
from bench.placement import (
    OWNERS,
    Agents,
    Calls,
    _counting,
    _finished,
    _heartbeats_due,
    _hello,
    _patched,
    _say,
    _specs,
)

JOB_CPUS, JOB_MEMORY_MB = 2, 2048
CAP = 1_000_000
# Timed by the name they are reported under: (module, attribute) patched.
_TIMED = {
    "job_submit": [("jobs.apis", "job_submit")],
    "group_create": [("jobs.group_apis", "group_create")],
    "_task_start": [("jobs.services.groups", "_task_start")],
    "group_task_settled": [("jobs.services.groups", "group_task_settled")],
    # the offer inside a submit and inside a task start
    "job_offer_next": [
        ("jobs.services.submit", "job_offer_next"),
        ("jobs.services.groups", "job_offer_next"),
    ],
}


@dataclass
class Run:
    label: str
    jobs: int
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    queries: int = 0
    create_seconds: float = 0.0
    background_seconds: float = 0.0
    calls: Calls = field(default_factory=Calls)
    samples: dict[str, list[float]] = field(default_factory=dict)
    most_at_once: int = 0

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


@contextmanager
def _sampled(run: Run) -> Iterator[None]:
    """Each timed function's calls, in ms, in ``run.samples``; and, under ``<name> own``, the
    time of each call less that of the timed calls inside it (a settlement less the task start
    it made)."""
    import importlib

    from django.db import connection

    # per open timed call: the time and the statements of the timed calls inside it
    inner: list[list[float]] = []
    statements = [0]

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements[0] += 1
        return execute(sql, params, many, context)

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started, before = time.perf_counter(), statements[0]
            inner.append([0.0, 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                took, ran = (time.perf_counter() - started) * 1000, statements[0] - before
                nested, nested_ran = inner.pop()
                if inner:
                    inner[-1][0] += took
                    inner[-1][1] += ran
                for key, value in (
                    (name, took),
                    (f"{name} own", took - nested),
                    (f"{name} statements", ran),
                    (f"{name} own statements", ran - nested_ran),
                ):
                    run.samples.setdefault(key, []).append(value)

        return timed

    patches = {}
    for name, places in _TIMED.items():
        module, attribute = places[0]
        wrapped = wrap(name, getattr(importlib.import_module(module), attribute))
        patches.update({place: wrapped for place in places})
    with _patched(patches), connection.execute_wrapper(count):
        yield


def _fleet(tag: str, hosts: int, slots: int) -> tuple[Any, list[int]]:
    """A funded renter's API client and ``hosts`` connected hosts of ``slots`` slots."""
    from rest_framework.test import APIClient

    from accounts.models import User
    from config.transactions import durable_call
    from hosts.models import Host
    from hosts.services import enrollment_create, host_connect, host_register
    from jobs.agent_socket import hello_accept
    from ledger.services import wallet_credit

    renter = User.objects.create_user(username=f"{tag}-renter", email=f"{tag}@bench.invalid")
    durable_call(wallet_credit, user=renter, amount_micros=10**13, key=f"{tag}:buy", reason="b")
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
        durable_call(hello_accept, host_id, f"{tag}-{host_id}", seq, _hello(slots))
        host_ids.append(host_id)
    client = APIClient()
    client.force_authenticate(renter)
    return client, host_ids


def _job_body() -> dict[str, Any]:
    return {
        "code": "import json\nprint(json.load(open('/inputs/task.json')))\n",
        "placement": "auto",
        "cpus": JOB_CPUS,
        "memory_mb": JOB_MEMORY_MB,
        "timeout_seconds": 600,
        "max_cost_micros": CAP,
    }


def _start_offered(run: Run, agents: Agents) -> int:
    """The simulated agents take every offer: accept, preparing, running."""
    started = 0
    while agents.offers:
        host_id, offer = agents.offers.popleft()
        ref = {"job_id": offer["job_id"], "attempt": offer["attempt"]}
        _say(run.calls, host_id, "job.accept", ref)
        _say(run.calls, host_id, "job.started", {**ref, "phase": "preparing"})
        _say(run.calls, host_id, "job.started", {**ref, "phase": "running"})
        agents.running.append((host_id, offer["job_id"], offer["attempt"]))
        started += 1
    return started


def _drive(run: Run, agents: Agents, tag: str, beats: dict[int, float], total: int) -> None:
    """Run offers until ``total`` jobs have started; a finish frees a slot when all are taken."""
    started = 0
    while True:
        _heartbeats_due(run.calls, tag, agents, beats)
        started += _start_offered(run, agents)
        run.most_at_once = max(run.most_at_once, len(agents.running))
        if started >= total:
            return
        if not agents.running:
            raise SystemExit(f"{run.label}: nothing runs and nothing was offered: stalled")
        host_id, job, number = agents.running.popleft()
        _say(run.calls, host_id, "job.finished", _finished(job, number))


def _finish_all(agents: Agents, host_ids: list[int], tag: str) -> None:
    from config.transactions import durable_call
    from hosts.models import Host
    from hosts.services import host_disconnect

    calls = Calls()
    while agents.running or agents.offers:
        while agents.running:
            host_id, job, number = agents.running.popleft()
            _say(calls, host_id, "job.finished", _finished(job, number))
        _start_offered(Run("drain", 0), agents)
    for host_id, connection_id in Host.objects.filter(pk__in=host_ids).values_list(
        "pk", "connection_id"
    ):
        durable_call(host_disconnect, host_id=host_id, connection_id=connection_id)


def measure_latency(tag: str, hosts: int, slots: int, count: int) -> Run:
    """``count`` single submits, each onto a fleet with room, each run to its end after."""
    run = Run("single submit -> offered", count)
    agents = Agents()
    with _patched(_recorders(agents)):
        client, host_ids = _fleet(tag, hosts, slots)
        beats = {host_id: time.monotonic() for host_id in host_ids}
        with _sampled(run):
            for _ in range(count):
                _heartbeats_due(run.calls, tag, agents, beats)
                response = client.post("/api/v1/jobs/", _job_body(), format="json")
                assert response.status_code == 201, response.json()
                _start_offered(run, agents)
                host_id, job, number = agents.running.popleft()
                _say(run.calls, host_id, "job.finished", _finished(job, number))
        _finish_all(agents, host_ids, tag)
    return run


def measure_singles(tag: str, hosts: int, slots: int, count: int) -> Run:
    """``count`` single jobs submitted at once, run until the last one is running."""
    run = Run(f"{count} single jobs (baseline)", count)
    agents = Agents()
    with _patched(_recorders(agents)):
        client, host_ids = _fleet(tag, hosts, slots)
        with _sampled(run), _counting() as queries:
            began, began_cpu = time.perf_counter(), time.process_time()
            beats = {host_id: time.monotonic() for host_id in host_ids}
            for _ in range(count):
                # The agents heartbeat meanwhile: submitting them all takes a while.
                _heartbeats_due(run.calls, tag, agents, beats)
                response = client.post("/api/v1/jobs/", _job_body(), format="json")
                assert response.status_code == 201, response.json()
            _drive(run, agents, tag, beats, count)
            run.seconds = time.perf_counter() - began
            run.cpu_seconds = time.process_time() - began_cpu
            run.queries = queries[0]
        _finish_all(agents, host_ids, tag)
    return run


def measure_group(tag: str, hosts: int, slots: int, count: int) -> Run:
    """One group of ``count`` tasks, every slot at once, run until its last task is running."""
    from jobs.models import JobGroup, JobGroupStatus

    run = Run(f"1 group of {count} tasks", count)
    agents = Agents()
    body = {
        **_job_body(),
        "max_cost_micros": CAP * count,
        "task_max_cost_micros": CAP,
        "max_parallel": hosts * slots,
        "inputs": [
            {"argument": {"i": index, "name": f"part-{index:05d}"}} for index in range(count)
        ],
    }
    from jobs.tasks import group_start

    queued: list[int] = []  # the background start, run here in the open (Celery is eager)
    with _patched(_recorders(agents)), _queued_instead(group_start, queued):
        client, host_ids = _fleet(tag, hosts, slots)
        with _sampled(run), _counting() as queries:
            began, began_cpu = time.perf_counter(), time.process_time()
            response = client.post("/api/v1/job-groups/", body, format="json")
            run.create_seconds = time.perf_counter() - began
            assert response.status_code == 201, response.json()
            for group_id in queued:
                group_start(group_id)
            run.background_seconds = time.perf_counter() - began - run.create_seconds
            _drive(run, agents, tag, {host_id: time.monotonic() for host_id in host_ids}, count)
            run.seconds = time.perf_counter() - began
            run.cpu_seconds = time.process_time() - began_cpu
            run.queries = queries[0]
        _finish_all(agents, host_ids, tag)
        group = JobGroup.objects.get(pk=response.json()["id"])
        if group.status != JobGroupStatus.FINISHED or group.status_reason != (
            f"{count} tasks: {count} succeeded"
        ):
            raise SystemExit(f"the group ended {group.status}: {group.status_reason}")
    return run


@contextmanager
def _queued_instead(task: Any, queued: list[int]) -> Iterator[None]:
    """``task.delay_on_commit(pk)`` records ``pk`` instead of running the task at the commit
    (Celery is eager here), so that the bench times it on its own."""
    saved = task.delay_on_commit
    task.delay_on_commit = queued.append
    try:
        yield
    finally:
        task.delay_on_commit = saved


def _recorders(agents: Agents) -> dict[tuple[str, str], Any]:
    return {
        ("jobs.agent_link", "agent_send"): agents.send,
        ("jobs.events", "job_event_push"): lambda job_id, event: None,
        ("jobs.events", "job_events_push"): lambda pushes: None,
        ("jobs.events", "group_event_push"): lambda group_id, event: None,
    }


def _ms(samples: Sequence[float]) -> str:
    if not samples:
        return "-"
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered):6.2f} ms  p95 {p95:6.2f} ms  (n={len(ordered)})"


def _report(latency: Run, singles: Run, group: Run, hosts: int, slots: int, version: str) -> None:
    print(
        f"groups: {group.jobs} tasks of {JOB_CPUS} CPUs / {JOB_MEMORY_MB} MB, {hosts} hosts of "
        f"8 cores / 16 GB with {slots} slots ({hosts * slots} at once), {version}, simulated "
        "agents in one thread, the API in process"
    )
    from django.conf import settings

    created = group.samples.get("group_create", [0.0])[0]
    starts = group.samples.get("_task_start", [])
    first_wave = min(hosts * slots, group.jobs)
    batch = min(settings.JOB_GROUP_START_BATCH, first_wave)
    print(
        f"create the group: POST of {group.jobs} tasks -> 201 in {group.create_seconds:.2f} s "
        f"(the service {created / 1000:.2f} s, of which its first {batch} task starts "
        f"{sum(starts[:batch]) / 1000:.2f} s); the other {first_wave - batch} of the first "
        f"{first_wave} started after it, a batch of {batch} per transaction, in "
        f"{group.background_seconds:.2f} s"
    )
    print(
        f"{'':<32}{'jobs':>6}{'seconds':>9}{'placed+started/s':>18}{'queries/job':>13}"
        f"{'CPU ms/job':>12}{'at once':>9}"
    )
    for run in (singles, group):
        print(
            f"{run.label:<32}{run.jobs:>6}{run.seconds:>9.2f}{run.rate:>18,.0f}"
            f"{run.queries / run.jobs:>13.1f}{run.cpu_seconds * 1000 / run.jobs:>12.1f}"
            f"{run.most_at_once:>9}"
        )
    print(
        f"{'ratio group / baseline':<47}{group.rate / singles.rate:>18.2f}"
        f"{group.queries / singles.queries:>13.2f}{group.cpu_seconds / singles.cpu_seconds:>12.2f}"
    )
    wave = slice(0, first_wave)
    print(
        f"per job, server side, while the fleet fills from empty to every slot taken (the first "
        f"{first_wave}); medians (p95):"
    )
    print(f"  {'':<38}{'whole':>17}{'its offer':>17}{'the rest':>17}")
    for label, run, name in (
        ("single job: POST /jobs/ -> offered", singles, "job_submit"),
        ("group task start -> offered", group, "_task_start"),
    ):
        for unit, suffix in (("ms", ""), ("statements", " statements")):
            whole = run.samples.get(f"{name}{suffix}", [])[wave]
            offer = run.samples.get(f"job_offer_next{suffix}", [])[wave]
            rest = run.samples.get(f"{name} own{suffix}", [])[wave]
            print(
                f"  {label if not suffix else '':<38}{_short(whole, unit):>17}"
                f"{_short(offer, unit):>17}{_short(rest, unit):>17}"
            )
    print(
        "  (the rest: a submit's checks, its job and its hold; a task's job from the template, "
        "its argument's blob and its hold)"
    )
    print(f"  a later task's start (by a settlement)  {_ms(starts[first_wave:])}")
    own = group.samples.get("group_task_settled own", [])
    own_statements = group.samples.get("group_task_settled own statements", [])
    print(
        f"  group bookkeeping per settled task (less the start in it) {_ms(own)}, "
        f"{statistics.median(own_statements or [0]):.0f} statements (median)"
    )
    finished_single = singles.calls.ms_per_call("job.finished")
    finished_group = group.calls.ms_per_call("job.finished")
    print(
        f"  job.finished (settles, offers the next): single {finished_single:.2f} ms, group task "
        f"{finished_group:.2f} ms (ratio {finished_group / finished_single:.2f}; mean)"
    )
    print(
        f"  single job POST /jobs/ -> offered onto an idle fleet (the dispatch latency of today) "
        f"{_ms(latency.samples['job_submit'])}"
    )


def _short(samples: Sequence[float], unit: str = "ms") -> str:
    if not samples:
        return "-"
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    if unit != "ms":
        return f"{statistics.median(ordered):.0f} ({p95:.0f})"
    return f"{statistics.median(ordered):.1f} ({p95:.0f}) ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.groups", description=__doc__)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=200, help="latency samples")
    args = parser.parse_args(argv)
    django_setup()
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    if not settings.IS_POSTGRES:
        print("groups: skipped, needs PostgreSQL (set DATABASE_URL)")
        return 0
    with tempfile.TemporaryDirectory() as blobs:
        # The tasks' arguments are blobs: in a scratch folder, never the checkout's var/blobs.
        store: dict[str, Any] = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": blobs, "allow_overwrite": True},
        }
        with override_settings(STORAGES={**settings.STORAGES, "blobs": store}):
            return _main(args, connection)


def _main(args: argparse.Namespace, connection: Any) -> int:
    with scratch_database("bench_groups"):
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            row = cursor.fetchone()
        version = f"PostgreSQL {row[0].split()[0] if row else '?'}"
        latency = measure_latency("lat", args.hosts, args.slots, args.singles)
        singles = measure_singles("one", args.hosts, args.slots, args.tasks)
        group = measure_group("grp", args.hosts, args.slots, args.tasks)
        _report(latency, singles, group, args.hosts, args.slots, version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
