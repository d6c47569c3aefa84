"""Charges from usage: exact to the micro-credit from the cumulative counters, whatever the
order reports arrive in; the cap; settlement; lost attempts reversed; receipts and earnings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hosts.models import Host
from jobs.agent_messages import resume_decide
from jobs.billing import usage_charges_post
from jobs.models import AttemptStatus, Job, JobAttempt, UsageReport
from jobs.selectors import job_facts
from jobs.tasks import jobs_reap_pass
from ledger.models import AccountKind
from ledger.providers import providers
from ledger.services import earnings_mature
from tests.jobs.conftest import Wire
from tests.jobs.helpers import lease_of, reply_types, say
from tests.jobs.metering_steps import (
    CAP,
    FUNDS,
    PER_SECOND_MAX,
    RATES,
    assert_reconciled,
    captured,
    charged,
    expected_cost,
    fee_of,
    final,
    metered_job,
    report,
    run,
    usage_keys,
)
from tests.ledger.helpers import balance


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, FUNDS)
    return ledger


@pytest.fixture
def host(make_host, hana):
    return make_host(hana, "metered", **RATES)


@pytest.fixture
def other_host(make_host, hana):
    return make_host(hana, "other", **RATES)


def test_a_scripted_usage_stream_is_charged_exactly(
    alice, hana, host, funded, committed, wire: Wire
):
    # given: a running attempt
    with committed():
        job = metered_job(alice, host)
        run(job, host)

    def charged_after_post() -> int:
        with committed():
            usage_charges_post()
        return captured(job)

    # when: reports arrive repeated, out of order, with gaps, across an agent restart
    with committed():
        first = report(host, job, 1, "1.5", "1.0")
    after_1 = charged_after_post()
    with committed():
        replay = report(host, job, 1, "1.5", "1.0")
        report(host, job, 3, "4.25", "3.001")  # seq 2 is late
        late = report(host, job, 2, "3.0", "2.0")
    after_3 = charged_after_post()
    with committed():
        report(host, job, 5, "8.5", "6.333")  # seq 4 is lost for now: a gap
    after_5 = charged_after_post()
    again = charged_after_post()
    # the agent restarts: it says hello with the job, the server keeps it, counters carry on
    with committed():
        keep, kill, _ = resume_decide(host.pk, [{"job_id": job.pk, "attempt": 1}])
        report(host, job, 4, "6.0", "5.0")  # the outbox resends seq 4: older than 5, no-op
        report(host, job, 6, "10.0", "8.0")
    after_6 = charged_after_post()
    with committed():
        done = say(host, "job.finished", **final(job, 7, "11.111", "9.999"))

    # then: every step charged up to the cost of the furthest counters, never twice
    assert reply_types(first) == ["usage.ack"]
    assert first[0][1] == {"job_id": job.pk, "attempt": 1, "seq": 1, "stop": False}
    assert replay == first
    assert late == [("usage.ack", {"job_id": job.pk, "attempt": 1, "seq": 2, "stop": False})]
    assert (keep, kill) == ([{"job_id": job.pk, "attempt": 1}], [])
    assert done == [("ack", {"ack_id": done[0][1]["ack_id"]})]
    assert [after_1, after_3, after_5, again, after_6] == [
        expected_cost(1_500, 1_000),
        expected_cost(4_250, 3_001),
        expected_cost(8_500, 6_333),
        expected_cost(8_500, 6_333),
        expected_cost(10_000, 8_000),
    ]
    total = expected_cost(11_111, 9_999)
    assert total == 16_110
    job.refresh_from_db()
    assert (job.status, job.cost_micros, job.hold_released_at is not None) == (
        "succeeded",
        total,
        True,
    )
    assert usage_keys(job) == [
        f"usage:{job.pk}:1:{before}" for before in (0, after_1, after_3, after_5, after_6)
    ]
    # the renter paid exactly the total; the host earned it less the fee; nothing is held
    assert funded.wallets[alice.pk] == FUNDS - total
    assert balance(AccountKind.ESCROW, job_id=job.pk) == 0
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == total - fee_of(total)
    assert balance(AccountKind.REVENUE) == fee_of(total) == 1_611
    attempt = job.attempts.get()
    assert (attempt.usage_seq, attempt.usage_cpu_ms, attempt.usage_wall_ms) == (7, 11_111, 9_999)
    assert (attempt.charged_micros, attempt.reversed_micros) == (total, 0)
    assert list(
        UsageReport.objects.filter(attempt=attempt).order_by("seq").values_list("seq", "is_final")
    ) == [(1, False), (3, False), (5, False), (6, False), (7, True)]
    assert Host.objects.get(pk=host.pk).flagged_reports == 0
    assert_reconciled()


def test_the_live_socket_carries_the_cost_so_far(alice, host, funded, committed, wire: Wire):
    # given
    with committed():
        job = metered_job(alice, host)
        run(job, host)
        report(host, job, 1, "2.0", "2.0")
    wire.clear()
    # when
    with committed():
        usage_charges_post()
    # then
    assert [e for _, e in wire.events] == [
        {
            "type": "job.usage",
            "job_id": job.pk,
            "attempt": 1,
            "seq": 1,
            "cpu_seconds": 2.0,
            "wall_seconds": 2.0,
            "memory_peak_mb": 101,
            "memory_current_mb": 90,
            "gpu_seconds": 0.0,
            "cost_micros": expected_cost(2_000, 2_000),
        }
    ]


def test_stop_counts_unbilled_usage_and_the_server_ends_the_job_at_the_cap(
    alice, hana, host, funded, committed, wire: Wire
):
    # given: the smallest cap, a minute at full use
    cap = 60 * PER_SECOND_MAX
    with committed():
        job = metered_job(alice, host, cap=cap)
        run(job, host)
        report(host, job, 1, "110.0", "58.0")
    with committed():
        usage_charges_post()

    # when: 148,000 of usage, not charged yet: one more second at full use would pass the cap
    with committed():
        near = report(host, job, 2, "118.0", "60.0")
    assert captured(job) == expected_cost(110_000, 58_000)
    # and then the agent carries on past the cap
    with committed():
        over = report(host, job, 3, "120.0", "61.0")

    # then: told to stop before the cap, stopped by the server at it
    assert near == [("usage.ack", {"job_id": job.pk, "attempt": 1, "seq": 2, "stop": True})]
    assert over == [
        ("usage.ack", {"job_id": job.pk, "attempt": 1, "seq": 3, "stop": True}),
        (
            "job.cancel",
            {
                "job_id": job.pk,
                "attempt": 1,
                "reason": "budget_exhausted: the job's usage reached its cost cap",
            },
        ),
    ]
    job.refresh_from_db()
    assert (job.status, job.cost_micros, job.hold_released_at is not None) == (
        "budget_exhausted",
        cap,
        True,
    )
    assert job.attempts.get().status == AttemptStatus.BUDGET_EXHAUSTED
    assert charged(job) == cap
    assert funded.wallets[alice.pk] == FUNDS - cap
    assert Host.objects.get(pk=host.pk).jobs_finished == 1

    # and when the agent reports it stopped (as cancelled), and resends its last report
    before = (funded.wallets[alice.pk], charged(job), job.status)
    with committed():
        ack = say(host, "job.finished", **final(job, 4, "121.0", "62.0", status="cancelled"))
        late = report(host, job, 4, "121.0", "62.0", is_final=True)

    # then: acknowledged; nothing more is charged or changed
    assert reply_types(ack) == ["ack"]
    assert late == [("usage.ack", {"job_id": job.pk, "attempt": 1, "seq": 4, "stop": True})]
    job.refresh_from_db()
    assert (funded.wallets[alice.pk], charged(job), job.status) == before
    assert_reconciled()


def test_a_lost_attempt_is_reversed_and_the_next_starts_from_zero(
    alice, hana, host, other_host, funded, committed, settings, monkeypatch
):
    # given: attempt 1 charged on one host; even with no dispute window its earnings stay
    # pending while the job has not settled (issue 11: payout, then lose the attempt)
    monkeypatch.setattr(providers, "job_facts", job_facts)
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 0
    with committed():
        job = metered_job(alice, None)
        assert job.host_id == host.pk
        run(job, host)
        report(host, job, 1, "30.0", "20.0")
    with committed():
        usage_charges_post()
    first_cost = expected_cost(30_000, 20_000)
    assert earnings_mature() == 0
    assert balance(AccountKind.EARNINGS_AVAILABLE, user=hana) == 0
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == first_cost - fee_of(first_cost)

    # when: the host goes silent; the job runs again on the other host
    Host.objects.filter(pk=other_host.pk).update(last_seen_at=lease_of(job))
    with committed():
        reaped = jobs_reap_pass(now=lease_of(job) + timedelta(seconds=1))
    job.refresh_from_db()

    # then: everything attempt 1 cost is back in the escrow, out of the host's earnings
    assert (reaped.attempts_lost, job.status, job.attempt) == (1, "offered", 2)
    assert (captured(job), charged(job), job.cost_micros) == (first_cost, 0, 0)
    assert balance(AccountKind.ESCROW, job_id=job.pk) == CAP
    assert balance(AccountKind.EARNINGS_AVAILABLE, user=hana) == 0
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 0
    assert balance(AccountKind.REVENUE) == 0
    lost = job.attempts.get(number=1)
    assert (lost.status, lost.charged_micros, lost.reversed_micros) == (
        "lost",
        first_cost,
        first_cost,
    )

    # and when attempt 2 runs from zero, and the lost agent's late report arrives
    with committed():
        run(job, other_host, 2)
        stale = report(host, job, 2, "40.0", "30.0")
        report(other_host, job, 1, "3.0", "4.0", attempt=2)
        say(other_host, "job.finished", **final(job, 2, "5.0", "6.0", attempt=2))

    # then: only attempt 2 is paid for
    second_cost = expected_cost(5_000, 6_000)
    assert reply_types(stale) == ["error", "job.cancel"]
    job.refresh_from_db()
    assert (job.status, job.cost_micros) == ("succeeded", second_cost)
    assert (captured(job, 1), captured(job, 2), charged(job)) == (
        first_cost,
        second_cost,
        second_cost,
    )
    assert funded.wallets[alice.pk] == FUNDS - second_cost
    assert [
        Host.objects.filter(pk=h.pk).values_list("jobs_finished", "jobs_lost").get()
        for h in (host, other_host)
    ] == [(0, 1), (1, 0)]
    assert_reconciled()


def test_a_lost_attempt_whose_reversal_was_interrupted_is_reversed_by_the_reaper(
    alice, host, funded, committed, monkeypatch
):
    # given: a lost attempt left unreversed (before the loss and its reversal shared one
    # transaction, a crash could fall between them)
    with committed():
        job = metered_job(alice, host)
        run(job, host)
        report(host, job, 1, "10.0", "10.0")
    with committed():
        usage_charges_post()
    monkeypatch.setattr("jobs.services.dispatch.attempt_charges_reverse", lambda pk: 0)
    monkeypatch.setattr("jobs.tasks.attempt_charges_reverse", lambda pk: 0)
    with committed():
        jobs_reap_pass(now=lease_of(job) + timedelta(seconds=1))
    assert charged(job) == expected_cost(10_000, 10_000)
    monkeypatch.undo()

    # when
    with committed():
        reaped = jobs_reap_pass(now=timezone.now())

    # then
    assert reaped.attempts_reversed == 1
    assert (charged(job), Job.objects.get(pk=job.pk).cost_micros) == (0, 0)
    assert_reconciled()


def test_a_report_racing_a_loss_is_not_charged(alice, host, funded, committed):
    # given: usage stored, then the attempt lost before the poster ran
    with committed():
        job = metered_job(alice, host)
        run(job, host)
        report(host, job, 1, "10.0", "10.0")
    with committed():
        jobs_reap_pass(now=lease_of(job) + timedelta(seconds=1))
    # when
    with committed():
        posted = usage_charges_post()
    # then
    assert (posted.posted, charged(job)) == (0, 0)
    assert JobAttempt.objects.get(job=job, number=1).status == AttemptStatus.LOST


def test_the_receipt_equals_the_wallet_decrease(alice, hana, host, funded, committed, api):
    # given: a finished job
    with committed():
        job = metered_job(alice, host)
        run(job, host)
        report(host, job, 1, "2.5", "3.0")
    with committed():
        usage_charges_post()
        say(host, "job.finished", **final(job, 2, "4.321", "5.5"))
    total = expected_cost(4_321, 5_500)
    # when
    api.force_authenticate(alice)
    body = api.get(f"/api/v1/jobs/{job.pk}/receipt/").json()
    # then
    attempt = JobAttempt.objects.get(job=job)
    assert body == {
        "job_id": job.pk,
        "job_name": "main.py",
        "status": "succeeded",
        "is_settled": True,
        "max_cost_micros": CAP,
        "attempts": [
            {
                "attempt": 1,
                "host_id": host.pk,
                "status": "succeeded",
                "started_at": body["attempts"][0]["started_at"],
                "finished_at": body["attempts"][0]["finished_at"],
                "wall_seconds": "5.5",
                "memory_peak_mb": 100,
                "usage": [
                    {
                        "resource": "cpu",
                        "quantity": "4.321",
                        "unit": "core-second",
                        "rate_micros_per_hour": 3_600_000,
                    },
                    {
                        "resource": "memory",
                        "quantity": "2.75",
                        "unit": "GB-second",
                        "rate_micros_per_hour": 3_600_000,
                    },
                    {
                        "resource": "gpu",
                        "quantity": "0",
                        "unit": "GPU-second",
                        "rate_micros_per_hour": 0,
                    },
                ],
                "usage_cost_micros": total,
                "gross_micros": total,
                "fee_micros": fee_of(total),
                "host_net_micros": total - fee_of(total),
                "reversed_micros": 0,
                "reversed_fee_micros": 0,
                "charged_micros": total,
            }
        ],
        "totals": {
            "gross_micros": total,
            "fee_micros": fee_of(total),
            "host_net_micros": total - fee_of(total),
            "reversed_micros": 0,
            "charged_micros": total,
        },
        "hold_micros": CAP,
        "refund_micros": CAP - total,
        "held_micros": 0,
        "spent_by": "alice",
        "paid_by": {"wallet": "user", "organisation": None, "organisation_name": None},
    }
    assert attempt.started_at is not None
    assert FUNDS - funded.wallets[alice.pk] == body["totals"]["charged_micros"]
    assert body["hold_micros"] - body["refund_micros"] == body["totals"]["charged_micros"]
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == body["totals"]["host_net_micros"]


def test_only_the_owner_reads_a_receipt(alice, mallory, host, funded, committed, api):
    # given
    with committed():
        job = metered_job(alice, host)
    # when
    anonymous = api.get(f"/api/v1/jobs/{job.pk}/receipt/")
    api.force_authenticate(mallory)
    someone_else = api.get(f"/api/v1/jobs/{job.pk}/receipt/")
    # then
    assert anonymous.status_code == 401
    assert (someone_else.status_code, someone_else.json()["error"]["code"]) == (404, "not_found")


def test_earnings_show_the_host_owner_their_money_per_job(
    alice, hana, mallory, host, other_host, funded, committed, api, settings
):
    # given: job A ran on hana's host and finished; job B was charged, lost and reversed
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 3600
    with committed():
        job_a = metered_job(alice, host)
        run(job_a, host)
        say(host, "job.finished", **final(job_a, 1, "10.0", "10.0"))
        job_b = metered_job(alice, other_host)
        run(job_b, other_host)
        report(other_host, job_b, 1, "2.0", "2.0")
    with committed():
        usage_charges_post()
        jobs_reap_pass(now=lease_of(job_b) + timedelta(seconds=1))
    cost_a, cost_b = expected_cost(10_000, 10_000), expected_cost(2_000, 2_000)

    # when
    api.force_authenticate(hana)
    body = api.get("/api/v1/earnings/").json()
    api.force_authenticate(mallory)
    nothing = api.get("/api/v1/earnings/").json()
    api.force_authenticate(None)
    anonymous = api.get("/api/v1/earnings/")

    # then
    lines = [{k: v for k, v in line.items() if k != "last_charged_at"} for line in body["results"]]
    assert {k: v for k, v in body.items() if k != "results"} == {
        "pending_micros": cost_a - fee_of(cost_a),
        "available_micros": 0,
        "in_payout_micros": 0,
        "paid_micros": 0,
        "count": 2,
        "next": None,
        "previous": None,
    }
    assert lines == [
        {
            "job_id": job_b.pk,
            "gross_micros": cost_b,
            "fee_micros": fee_of(cost_b),
            "net_micros": cost_b - fee_of(cost_b),
            "reversed_micros": cost_b - fee_of(cost_b),
            "earned_micros": 0,
        },
        {
            "job_id": job_a.pk,
            "gross_micros": cost_a,
            "fee_micros": fee_of(cost_a),
            "net_micros": cost_a - fee_of(cost_a),
            "reversed_micros": 0,
            "earned_micros": cost_a - fee_of(cost_a),
        },
    ]
    assert nothing == {
        "pending_micros": 0,
        "available_micros": 0,
        "in_payout_micros": 0,
        "paid_micros": 0,
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }
    assert anonymous.status_code == 401
