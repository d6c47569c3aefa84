"""Taking usage reports: checked, stored once, acknowledged at once; impossible ones refused
and flagged, changing nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.protocol import Usage
from hosts.models import Host
from jobs.billing import usage_charges_post
from jobs.metering import (
    CPU_TOLERANCE_MS,
    CPU_TOLERANCE_RATIO,
    Counters,
    ImpossibleReport,
    check_physical,
)
from jobs.models import Job, JobAttempt, UsageReport
from jobs.services.usage import job_reservation, usage_ingest_fast
from tests.jobs.helpers import reply_types, say
from tests.jobs.metering_steps import (
    FUNDS,
    RATES,
    assert_reconciled,
    charged,
    expected_cost,
    final,
    metered_job,
    report,
    run,
)
from tests.ledger.helpers import ledger_state


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, FUNDS)
    return ledger


@pytest.fixture
def host(make_host, hana):
    return make_host(hana, "metered", **RATES)


def _attempt_state(attempt: JobAttempt) -> tuple[object, ...]:
    """The attempt's latest report and counters, and the reports stored."""
    attempt.refresh_from_db()
    return (
        attempt.usage_seq,
        attempt.usage,
        attempt.usage_cpu_ms,
        attempt.usage_wall_ms,
        UsageReport.objects.filter(attempt=attempt).count(),
    )


@pytest.mark.parametrize(
    ("started_ago_s", "earlier", "cpu", "wall", "reason"),
    [
        # 2 cores for 10 s: 20 s of CPU and a little slack is the most
        (3600, None, "22.0", "10.0", "cpu_exceeds_wall"),
        # the server saw the attempt start 30 s ago
        (30, None, "1.0", "40.0", "wall_ahead_of_server"),
        # a newer report whose counters are behind the accepted ones
        (3600, ("5.0", "5.0"), "4.0", "6.0", "counters_backwards"),
        (3600, ("5.0", "5.0"), "6.0", "4.999", "counters_backwards"),
    ],
)
def test_an_impossible_report_is_refused_and_flagged_and_changes_nothing(
    alice, host, funded, committed, started_ago_s, earlier, cpu, wall, reason
):
    # given
    with committed():
        job = metered_job(alice, host)
        attempt = run(job, host, started_ago_s=started_ago_s)
        if earlier is not None:
            report(host, job, 1, *earlier)
    before = (_attempt_state(attempt), ledger_state())
    # when
    with committed():
        refused = report(host, job, 2, cpu, wall)
        usage_charges_post()
    # then: an error naming the reason; the host flagged; nothing stored or charged beyond
    # what the earlier report was worth
    assert reply_types(refused) == ["error"]
    assert refused[0][1]["code"] == "usage_refused"
    assert refused[0][1]["message"].startswith(f"{reason}: ")
    assert Host.objects.get(pk=host.pk).flagged_reports == 1
    assert _attempt_state(attempt) == before[0]
    expected = 0 if earlier is None else expected_cost(5_000, 5_000)
    assert charged(job) == expected


def test_an_impossible_final_report_ends_the_job_billed_from_the_last_good_one(
    alice, host, funded, committed
):
    # given
    with committed():
        job = metered_job(alice, host)
        run(job, host)
        report(host, job, 1, "3.0", "3.0")
    # when: the final report claims 9 s of CPU on 2 cores in 3.5 s
    with committed():
        replies = say(host, "job.finished", **final(job, 2, "9.0", "3.5"))
    # then
    assert reply_types(replies) == ["error", "ack"]
    assert replies[0][1]["message"].startswith("cpu_exceeds_wall: ")
    job.refresh_from_db()
    assert (job.status, job.cost_micros) == ("succeeded", expected_cost(3_000, 3_000))
    assert funded.wallets[alice.pk] == FUNDS - expected_cost(3_000, 3_000)
    assert Host.objects.get(pk=host.pk).flagged_reports == 1
    assert_reconciled()


def test_reports_before_the_run_count_from_the_accept(alice, host, funded, committed):
    # given: accepted (installing requirements), not running yet
    with committed():
        job = metered_job(alice, host)
        say(host, "job.accept", job_id=job.pk, attempt=1)
    # when: a report of 1 s of wall time: within the server's clock and its slack
    with committed():
        replies = report(host, job, 1, "0.5", "1.0")
    # then
    assert reply_types(replies) == ["usage.ack"]
    assert JobAttempt.objects.get(job=job).usage_wall_ms == 1_000


@pytest.mark.postgres
def test_a_new_report_is_one_statement_and_a_repeat_two(
    alice, host, funded, committed, django_assert_num_queries
):
    # given
    with committed():
        job = metered_job(alice, host)
        run(job, host)
        report(host, job, 1, "1.0", "1.0")
    # when / then: the next report is one statement that fences, checks and stores it; a
    # repeat finds nothing to store there and is classified by the fenced read
    with django_assert_num_queries(1) as fresh_queries:
        fresh = report(host, job, 2, "2.0", "2.0")
    with django_assert_num_queries(2):
        repeat = report(host, job, 2, "2.0", "2.0")
    assert (
        fresh
        == repeat
        == [("usage.ack", {"job_id": job.pk, "attempt": 1, "seq": 2, "stop": False})]
    )
    assert fresh_queries.captured_queries[0]["sql"].lstrip().startswith("WITH moved AS")
    assert JobAttempt.objects.get(job=job).usage_seq == 2
    assert UsageReport.objects.filter(attempt__job=job).count() == 2


def test_a_report_after_the_end_is_acknowledged_with_stop(alice, host, funded, committed):
    # given
    with committed():
        job = metered_job(alice, host)
        run(job, host)
        say(host, "job.finished", **final(job, 3, "2.0", "2.0"))
    before = (_attempt_state(job.attempts.get()), ledger_state())
    # when: the agent resends its final report, then a later one
    with committed():
        again = report(host, job, 3, "2.0", "2.0", is_final=True)
        later = report(host, job, 4, "3.0", "3.0")
    # then
    assert [r[0][1]["stop"] for r in (again, later)] == [True, True]
    assert (_attempt_state(job.attempts.get()), ledger_state()) == before


@pytest.fixture
def running(alice, host, funded):
    job = metered_job(alice, host)
    return job, run(job, host, started_ago_s=3_601)


@pytest.mark.postgres
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cpus=st.sampled_from(["0.25", "1", "1.5", "2", "3.75", "8"]),
    wall_ms=st.integers(0, 3_600_000),
    cpu_slack=st.integers(-3, 3),
    cpu_percent=st.integers(0, 100),
)
def test_the_one_statement_path_accepts_exactly_what_check_physical_accepts(
    running, host, cpus, wall_ms, cpu_slack, cpu_percent
):
    # given: an attempt with no report yet that started an hour ago, on `cpus` cores; CPU time
    # near the limit (at it, just under, just over) or anywhere below it
    job, attempt = running
    Job.objects.filter(pk=job.pk).update(cpus=Decimal(cpus))
    JobAttempt.objects.filter(pk=attempt.pk).update(usage_seq=-1, usage_cpu_ms=0, usage_wall_ms=0)
    UsageReport.objects.filter(attempt=attempt).delete()
    limit = Decimal(wall_ms) * Decimal(cpus) * (1 + CPU_TOLERANCE_RATIO) + CPU_TOLERANCE_MS
    near = int(limit) + cpu_slack
    cpu_ms = max(0, near if cpu_percent == 100 else int(limit * cpu_percent / 100))
    job.refresh_from_db()
    try:
        check_physical(Counters(cpu_ms=cpu_ms, wall_ms=wall_ms), job_reservation(job), 3_601_000)
        is_possible = True
    except ImpossibleReport:
        is_possible = False
    data: Usage = {
        "job_id": job.pk,
        "attempt": 1,
        "seq": 1,
        "cpu_seconds": cpu_ms / 1000,
        "wall_seconds": wall_ms / 1000,
        "memory_peak_mb": 1,
        "memory_current_mb": 1,
        "gpu_seconds": 0.0,
    }
    # when
    verdict = usage_ingest_fast(host.pk, data)
    # then
    assert (verdict is not None) == is_possible
    attempt.refresh_from_db()
    assert attempt.usage_seq == (1 if is_possible else -1)
