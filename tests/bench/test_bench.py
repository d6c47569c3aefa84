"""The benchmark runner finds its modules, and the ledger benchmark measures what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import bench_names, main
from ledger.services import ledger_reconcile

ROOT = Path(__file__).resolve().parents[2]


def test_the_runner_finds_every_benchmark_module() -> None:
    assert "ledger" in bench_names()
    assert not [name for name in bench_names() if name.startswith("_")]


def test_the_runner_refuses_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-bench"])
    assert exit_info.value.code == 2
    assert "unknown benchmark(s): no-such-bench" in capsys.readouterr().err


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_ledger_benchmark_charges_both_paths_and_leaves_the_ledger_consistent() -> None:
    from bench.ledger import measure

    # when
    raw, service, statements = measure(charges=30, jobs=3, owners=2, threads=2, rounds=3)
    # then
    assert (raw.charges, service.charges, statements) == (30, 30, 2)
    assert raw.rate > 0
    assert service.rate > 0
    assert ledger_reconcile().is_clean


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_the_ingest_benchmark_drives_agents_and_finds_the_charges_exact() -> None:
    from django.db import connection

    from bench.ingest import PLAIN_ATTEMPTS, arguments, measure

    # given: a few agents, short phases, on the test database
    given = "--agents 4 --rate 40 --seconds 1 --warmup 0.5 --plain-seconds 0.5"
    args = arguments(given.split())
    # when
    measured = measure(args, connection.settings_dict["NAME"])
    # then: both phases were answered without errors, the plain psycopg baseline ran the same
    # statement and every report of it was taken, and every attempt's charges are exact (the
    # agents' and the baseline's own)
    target, saturation = measured.phases
    assert (target.name, saturation.name) == ("target", "saturation")
    assert target.acked > 0
    assert saturation.acked > 0
    assert (target.errors, saturation.errors) == ([], [])
    assert measured.plain.statements > 0
    assert measured.plain.refused == 0
    assert measured.plain.cpu_per_statement > 0
    assert measured.checked == 4 + PLAIN_ATTEMPTS


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_placement_benchmark_places_and_starts_every_queued_job_on_both_kinds_of_host() -> None:
    from bench.placement import measure
    from jobs.models import Job, JobStatus

    # when: 14 queued jobs through 3 hosts, one slot each, then four
    [baseline], [multi] = measure(hosts=3, jobs=14, slots=4)
    # then: every slot was used, only the finishes that freed a slot for the rest were needed,
    # and the reaper's tick (every slot taken) found nothing to offer
    assert (baseline.jobs, multi.jobs) == (14, 14)
    assert (baseline.most_at_once, multi.most_at_once) == (3, 12)
    assert (baseline.calls.calls["job.finished"], multi.calls.calls["job.finished"]) == (11, 2)
    assert (baseline.calls.calls["job.accept"], multi.calls.calls["job.accept"]) == (14, 14)
    assert (baseline.reap_jobs, multi.reap_jobs) == (11, 2)
    assert baseline.rate > 0
    assert multi.rate > 0
    # and every job ran to its end, paid for exactly
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 28
    assert not Job.objects.exclude(status=JobStatus.SUCCEEDED).exists()
    assert ledger_reconcile().is_clean


def test_the_protocol_benchmark_times_decode_here_and_at_a_revision(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.protocol import main as protocol_main

    assert protocol_main(["--number", "20", "--repeat", "1", "--against", "HEAD"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["heartbeat", "job.usage", "job.log"]
    assert all("at HEAD:" in line for line in lines)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_the_idle_agents_benchmark_measures_heartbeats_and_sees_every_host() -> None:
    from django.db import connection

    from bench.agents_idle import arguments, measure

    # given: a few agents, a 1 s heartbeat period, a short window, on the test database
    args = arguments(["--agents", "6", "--warm", "2", "--seconds", "2", "--heartbeat", "1"])
    # when: older agents (a heartbeat every second), the agents before agent/keepalive.py
    # (pinging on their own clock), then the agents now (pinging only a quiet server)
    old, pings, new = measure(args, connection.settings_dict["NAME"])
    # then: every agent connected, every host was seen (the newer ones from their open
    # sockets: each heartbeats once in 300 s, at a random phase), nothing was refused
    for measured in (old, pings, new):
        assert (measured.agents, measured.problems, measured.stale_hosts) == (6, [], 0)
    assert (old.style, pings.style, new.style) == ("old", "pings", "new")
    assert old.heartbeats >= 6
    assert old.server_cpu > 0
    assert pings.heartbeats < old.heartbeats
    assert new.heartbeats < old.heartbeats


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_ledger_history_benchmark_times_both_paths_at_two_sizes(settings: Any) -> None:
    from bench.ledger_history import measure

    # given: no dispute window (the benchmark's history matured as it was written)
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 0
    # when: two small sizes of history
    first, second = measure(
        [3_000, 6_000], new=300, earnings=200, owners=4, renters=3, out=lambda line: None
    )
    # then: each size was loaded; the incremental run read exactly the new postings, and both
    # maturity paths matured every owner's new earnings
    assert 3_000 <= first.postings < second.postings
    for row in (first, second):
        assert row.incremental_read == row.new_postings > 0
        assert row.matured == (4, 4)
        assert min(row.full_old, row.full_new, row.incremental, row.maturity) > 0
    assert ledger_reconcile(full=True).is_clean


def test_the_dispatch_benchmark_refuses_a_front_without_daphne(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.dispatch import main as dispatch_main

    with pytest.raises(SystemExit) as exit_info:
        dispatch_main(["--front", "haproxy", "--web", "0"])
    assert exit_info.value.code == 2
    assert "--jobs and --web must be at least 1" in capsys.readouterr().err


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.docker
@pytest.mark.cluster
def test_the_dispatch_benchmark_measures_direct_and_through_haproxy_in_one_run() -> None:
    # when: one measured job per front (after the warm-up), HAProxy in front of two daphne, in
    # a scratch database beside the configured one
    run = subprocess.run(
        [sys.executable, "-m", "bench.dispatch", "--jobs", "1", "--front", "haproxy", "--web", "2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )

    # then: every job ran to its end on its own front's host (the benchmark stops otherwise),
    # and both fronts have each stage's figures
    assert run.returncode == 0, run.stdout + run.stderr
    assert "HAProxy in front of 2 daphne" in run.stdout
    stages = [
        "POST -> offer written (its attempt's row)",
        "POST answered",
        "submit -> offer at the agent",
        "offer -> running",
    ]
    for front in ("direct", "haproxy"):
        heading = rf"^  {front} \(http://127\.0\.0\.1:\d+\):\n"
        block = re.search(heading + r"((?:    .*\n){4})", run.stdout, re.M)
        assert block is not None, run.stdout
        names = [line.strip().split(": p50 ")[0] for line in block.group(1).splitlines()]
        assert names == stages
    assert re.search(r"^  load average \(1 / 5 / 15 min\): [\d.]+ / ", run.stdout, re.M)
