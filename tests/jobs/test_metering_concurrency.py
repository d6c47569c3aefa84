"""Real threads on PostgreSQL: reports and batch posters racing never charge twice and never
pass a job's cap; the charges end exact."""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from jobs.billing import usage_charges_post
from jobs.models import Job
from ledger.models import AccountKind
from tests.jobs.helpers import say
from tests.jobs.metering_steps import (
    RATES,
    assert_reconciled,
    charged,
    expected_cost,
    final,
    metered_job,
    report,
    run,
)
from tests.ledger.helpers import balance

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

STEPS = 40  # reports per job; step k: 3.9 k s of CPU (2 cores), 2 k s of wall time
CAPS = [150_000, 180_000, 1_000_000, 1_000_000]  # the first two are reached


def _threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []

    def run_one(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # reported to the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run_one, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_racing_reports_and_posters_charge_exactly_and_never_pass_the_cap(
    alice, hana, make_host, ledger
):
    # given: four running jobs on four hosts
    funds = 10_000_000
    ledger.fund(alice, funds)
    hosts = [make_host(hana, f"h{i}", **RATES) for i in range(len(CAPS))]
    jobs = [metered_job(alice, h, cap=cap) for h, cap in zip(hosts, CAPS, strict=True)]
    for job, host in zip(jobs, hosts, strict=True):
        run(job, host)
    # every report twice, in a random order
    work: queue.Queue[tuple[int, int]] = queue.Queue()
    deliveries = [(j, k) for j in range(len(jobs)) for k in range(1, STEPS + 1)] * 2
    random.Random(5).shuffle(deliveries)
    for item in deliveries:
        work.put(item)
    replies: list[str] = []
    reporting = threading.Event()
    reporting.set()

    def reporter() -> None:
        while True:
            try:
                j, k = work.get_nowait()
            except queue.Empty:
                return
            answer = report(hosts[j], jobs[j], k, f"{3.9 * k:.1f}", f"{2.0 * k:.1f}")
            replies.append(answer[0][0])

    def poster() -> None:
        while reporting.is_set():
            usage_charges_post()

    def reporters_then_stop() -> None:
        errors = _threads([reporter] * 5)
        reporting.clear()
        if errors:
            raise errors[0]

    # when: five reporters and three posters race
    errors = _threads([reporters_then_stop, poster, poster, poster])
    usage_charges_post()
    for j in (2, 3):
        say(hosts[j], "job.finished", **final(jobs[j], STEPS + 1, f"{3.9 * STEPS:.1f}", "80.0"))

    # then
    assert errors == []
    assert set(replies) == {"usage.ack"}
    full = expected_cost(156_000, 80_000)
    outcome = [
        (job.status, job.cost_micros, charged(job))
        for job in Job.objects.filter(pk__in=[j.pk for j in jobs]).order_by("pk")
    ]
    assert outcome == [
        ("budget_exhausted", 150_000, 150_000),
        ("budget_exhausted", 180_000, 180_000),
        ("succeeded", full, full),
        ("succeeded", full, full),
    ]
    assert [balance(AccountKind.ESCROW, job_id=job.pk) for job in jobs] == [0, 0, 0, 0]
    assert ledger.wallets[alice.pk] == funds - (150_000 + 180_000 + 2 * full)
    assert_reconciled()


def test_concurrent_posters_charge_each_step_once(alice, hana, make_host, ledger):
    # given: thirty running jobs with usage waiting to be charged
    ledger.fund(alice, 40_000_000)
    host = make_host(hana, "big", cpus=64, memory_mb=65536, **RATES)
    jobs: list[Any] = []
    for _ in range(30):
        job = metered_job(alice, host)
        run(job, host)
        report(host, job, 1, "10.0", "10.0")
        jobs.append(job)
    results: list[int] = []

    def post() -> None:
        results.append(usage_charges_post().posted)

    # when: four posters at once, twice
    errors = _threads([post] * 4) + _threads([post] * 4)
    # then: each job charged once, exactly
    assert errors == []
    assert sum(results) == 30
    assert {charged(job) for job in jobs} == {expected_cost(10_000, 10_000)}
    assert {Job.objects.get(pk=job.pk).cost_micros for job in jobs} == {15_000}
    assert_reconciled()
