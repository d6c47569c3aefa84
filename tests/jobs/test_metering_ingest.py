"""Taking usage reports: checked, stored once, acknowledged at once; impossible ones refused
and flagged, changing nothing."""

from __future__ import annotations

import pytest
from django.db import connection

from hosts.models import Host
from jobs.billing import usage_charges_post
from jobs.models import JobAttempt, UsageReport
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
    attempt.refresh_from_db()
    return (
        attempt.usage_seq,
        attempt.usage,
        attempt.usage_cpu_ms,
        attempt.usage_wall_ms,
        attempt.usage_cost_micros,
        attempt.charged_micros,
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
    assert _attempt_state(attempt)[:5] == before[0][:5]
    assert _attempt_state(attempt)[6] == before[0][6]
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


def test_a_new_report_is_two_statements_and_a_repeat_one(
    alice, host, funded, committed, django_assert_num_queries
):
    # given
    with committed():
        job = metered_job(alice, host)
        run(job, host)
        report(host, job, 1, "1.0", "1.0")
    # when / then: the fenced read of the attempt (with its job), then one statement that
    # stores the report and moves the counters (two on SQLite); a repeat only reads
    stores = 1 if connection.vendor == "postgresql" else 2
    with django_assert_num_queries(1 + stores):
        fresh = report(host, job, 2, "2.0", "2.0")
    with django_assert_num_queries(1):
        repeat = report(host, job, 2, "2.0", "2.0")
    assert (
        fresh
        == repeat
        == [("usage.ack", {"job_id": job.pk, "attempt": 1, "seq": 2, "stop": False})]
    )


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
