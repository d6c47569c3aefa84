"""Dispatch: offers, accept/reject, timeouts, leases, loss and requeue, the reaper."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from config.transactions import durable_call
from hosts.models import Host
from jobs.agent_messages import resume_decide
from jobs.apps import ledger_providers_register
from jobs.models import AttemptStatus, Job, JobAttempt, JobHostRejection, JobStatus
from jobs.selectors import job_facts
from jobs.services.dispatch import offer_expire
from jobs.services.leases import cancels_pending, leases_renew, welcome_decide
from jobs.tasks import jobs_reap_pass
from ledger.providers import providers
from ledger.services import ledger_reconcile
from tests.jobs.conftest import Wire
from tests.jobs.helpers import finished, lease_of, reply_types, say, submit

FUNDS = 5_000_000


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, FUNDS)
    return ledger


@pytest.fixture
def cheap(make_host, hana):
    return make_host(hana, "cheap", cpu_core_hour_micros=50_000)


@pytest.fixture
def dear(make_host, hana):
    return make_host(hana, "dear", cpu_core_hour_micros=90_000)


def _job(job: Job) -> tuple[str, int, int | None]:
    job.refresh_from_db()
    return job.status, job.attempt, job.host_id


def test_accept_started_finished_runs_the_job_and_releases_the_hold(
    alice, cheap, funded, wire: Wire, committed, settings
):
    # given
    with committed():
        job = submit(alice)
    before = timezone.now()

    # when
    with committed():
        accepted = say(cheap, "job.accept", job_id=job.pk, attempt=1)
        preparing = say(cheap, "job.started", job_id=job.pk, attempt=1, phase="preparing")
        running = say(cheap, "job.started", job_id=job.pk, attempt=1, phase="running")
        done = say(cheap, "job.finished", **finished(job, 1))

    # then
    assert (accepted, preparing, running) == ([], [], [])
    assert reply_types(done) == ["ack"]
    job.refresh_from_db()
    assert (job.status, job.status_reason, job.exit_code) == ("succeeded", "exit code 0", 0)
    attempt = job.attempts.get()
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert lease_of(job) >= before + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    assert job.started_at is not None
    assert job.hold_released_at is not None
    assert funded.wallets[alice.pk] == FUNDS
    assert Host.objects.get(pk=cheap.pk).jobs_finished == 1
    assert wire.event_types(job.pk) == [
        "job.status",  # offered
        "job.status",  # accepted
        "job.status",  # preparing
        "job.status",  # running
        "job.status",  # succeeded
    ]
    assert [e["status"] for _, e in wire.events] == [
        "offered",
        "accepted",
        "preparing",
        "running",
        "succeeded",
    ]


def test_a_rejected_offer_moves_on_to_the_next_host(
    alice, cheap, dear, funded, wire: Wire, committed
):
    # given
    with committed():
        job = submit(alice)
    assert _job(job) == ("offered", 1, cheap.pk)

    # when
    with committed():
        replies = say(cheap, "job.reject", job_id=job.pk, attempt=1, reason="busy gaming")

    # then
    assert replies == []
    assert _job(job) == ("offered", 2, dear.pk)
    assert job.attempts.get(number=1).status == AttemptStatus.REJECTED
    assert list(JobHostRejection.objects.values_list("host_id", "reason")) == [
        (cheap.pk, "busy gaming")
    ]
    assert [(h, kind, d["attempt"]) for h, kind, d in wire.sent] == [
        (cheap.pk, "job.offer", 1),
        (dear.pk, "job.offer", 2),
    ]


def test_when_every_fitting_host_refused_the_job_fails_and_is_settled(
    alice, cheap, dear, funded, committed
):
    # given
    with committed():
        job = submit(alice)
        say(cheap, "job.reject", job_id=job.pk, attempt=1, reason="no")

    # when
    with committed():
        say(dear, "job.reject", job_id=job.pk, attempt=2, reason="no either")

    # then
    job.refresh_from_db()
    assert (job.status, job.status_reason) == (
        "failed",
        "every host that fits refused the job",
    )
    assert funded.wallets[alice.pk] == FUNDS


def test_a_chosen_host_that_refuses_fails_the_job_with_its_reason(
    alice, cheap, dear, funded, committed
):
    # given
    with committed():
        job = submit(alice, host=dear)

    # when
    with committed():
        say(dear, "job.reject", job_id=job.pk, attempt=1, reason="docker is not running")

    # then
    job.refresh_from_db()
    assert (job.status, job.status_reason) == (
        "failed",
        "the chosen host refused the job: docker is not running",
    )
    assert job.attempts.count() == 1
    assert funded.wallets[alice.pk] == FUNDS


def test_an_unanswered_offer_expires_and_goes_to_the_next_host(
    alice, cheap, dear, funded, wire: Wire, committed, settings
):
    # given
    with committed():
        job = submit(alice)
    expiry = job.attempts.get().offer_expires_at

    # when: the reaper runs before, then after, the offer's expiry
    early = jobs_reap_pass(now=expiry - timedelta(seconds=1))
    with committed():
        late = jobs_reap_pass(now=expiry + timedelta(seconds=1))

    # then
    assert early.offers_expired == 0
    assert (late.offers_expired, late.jobs_offered) == (1, 0)
    assert _job(job) == ("offered", 2, dear.pk)
    assert job.attempts.get(number=1).status == AttemptStatus.EXPIRED
    assert JobHostRejection.objects.get().reason == "did not answer the offer in time"


def test_a_chosen_host_that_does_not_answer_is_offered_again(alice, dear, funded, committed):
    # given
    with committed():
        job = submit(alice, host=dear)
    expiry = job.attempts.get().offer_expires_at

    # when
    with committed():
        jobs_reap_pass(now=expiry + timedelta(seconds=1))

    # then
    assert _job(job) == ("offered", 2, dear.pk)
    assert list(JobHostRejection.objects.values_list("kind", flat=True)) == ["expired"]


def _run(job: Job, host: Host, attempt: int, committed) -> None:
    with committed():
        say(host, "job.accept", job_id=job.pk, attempt=attempt)
        say(host, "job.started", job_id=job.pk, attempt=attempt, phase="running")


def test_an_expired_lease_loses_the_attempt_and_the_job_runs_again_elsewhere(
    alice, cheap, dear, funded, wire: Wire, committed
):
    # given: the job runs on the cheap host, which then goes silent
    with committed():
        job = submit(alice)
    _run(job, cheap, 1, committed)
    lease = lease_of(job)

    # when: the other host kept heartbeating
    Host.objects.filter(pk=dear.pk).update(last_seen_at=lease)
    with committed():
        report = jobs_reap_pass(now=lease + timedelta(seconds=1))

    # then: lost, requeued and offered to the other host as attempt 2
    assert report.attempts_lost == 1
    assert _job(job) == ("offered", 2, dear.pk)
    lost = job.attempts.get(number=1)
    assert (lost.status, lost.reason) == ("lost", "the host stopped renewing its lease")
    assert Host.objects.get(pk=cheap.pk).jobs_lost == 1

    # and when it runs there
    _run(job, dear, 2, committed)
    with committed():
        say(dear, "job.finished", **finished(job, 2))

    # then
    assert _job(job) == ("succeeded", 2, dear.pk)
    assert funded.wallets[alice.pk] == FUNDS


def test_a_lost_attempt_without_retries_left_fails_the_job(
    alice, cheap, dear, funded, committed, settings
):
    # given
    settings.JOB_MAX_ATTEMPTS = 1
    with committed():
        job = submit(alice)
    _run(job, cheap, 1, committed)
    lease = lease_of(job)

    # when
    with committed():
        jobs_reap_pass(now=lease + timedelta(seconds=1))

    # then
    job.refresh_from_db()
    assert (job.status, job.status_reason) == (
        "failed",
        "attempt 1 lost (the host stopped renewing its lease); no retries left",
    )
    assert job.attempts.count() == 1
    assert funded.wallets[alice.pk] == FUNDS


def test_heartbeats_renew_leases_and_name_what_to_kill(alice, cheap, funded, committed, settings):
    # given
    with committed():
        job = submit(alice)
    _run(job, cheap, 1, committed)
    later = timezone.now() + timedelta(seconds=30)

    # when
    cancels = leases_renew(
        cheap.pk,
        [{"job_id": job.pk, "attempt": 1}, {"job_id": job.pk + 100, "attempt": 1}],
        now=later,
    )

    # then
    assert job.attempts.get().lease_expires_at == later + timedelta(
        seconds=settings.JOB_LEASE_SECONDS
    )
    assert cancels == [
        {
            "job_id": job.pk + 100,
            "attempt": 1,
            "reason": "stale attempt: the server no longer runs it on this host",
        }
    ]
    assert jobs_reap_pass(now=later + timedelta(seconds=10)).attempts_lost == 0


def test_welcome_keeps_what_runs_kills_the_rest_and_loses_what_vanished(
    alice, cheap, dear, funded, ledger, committed
):
    # given: two jobs run on the cheap host
    with committed():
        kept = submit(alice)
    _run(kept, cheap, 1, committed)
    with committed():
        vanished = submit(alice)
    _run(vanished, cheap, 1, committed)

    # when: the agent comes back reporting the first and a stranger
    with committed():
        keep, kill = welcome_decide(
            cheap.pk,
            [{"job_id": kept.pk, "attempt": 1}, {"job_id": 999_999, "attempt": 3}],
        )

    # then
    assert keep == [{"job_id": kept.pk, "attempt": 1}]
    assert kill == [{"job_id": 999_999, "attempt": 3}]
    assert _job(kept) == ("running", 1, cheap.pk)
    assert _job(vanished) == ("offered", 2, dear.pk)
    assert vanished.attempts.get(number=1).reason == "the agent restarted without it"


def test_pending_cancels_repeat_until_the_agent_finishes(
    alice, client_for, cheap, funded, committed
):
    # given
    with committed():
        job = submit(alice)
    _run(job, cheap, 1, committed)
    with committed():
        client_for(alice).post(f"/api/v1/jobs/{job.pk}/cancel/")

    # when / then
    expected = [{"job_id": job.pk, "attempt": 1, "reason": "cancelled by the owner"}]
    assert cancels_pending(cheap.pk) == expected
    assert cancels_pending(cheap.pk) == expected
    with committed():
        say(cheap, "job.finished", **finished(job, 1, status="cancelled"))
    assert cancels_pending(cheap.pk) == []
    assert _job(job) == ("cancelled", 1, cheap.pk)


def test_a_queued_job_nobody_takes_fails_after_the_queue_timeout(
    alice, cheap, funded, committed, settings
):
    # given: the only host gets busy right after the job was accepted
    with committed():
        job = submit(alice, cpus=8)
    Host.objects.filter(pk=cheap.pk).update(is_available=False)
    with committed():
        say(cheap, "job.reject", job_id=job.pk, attempt=1, reason="no")
    job.refresh_from_db()
    assert job.status == "failed"  # every fitting host refused

    # and a second job that finds no host free at all
    Host.objects.filter(pk=cheap.pk).update(is_available=True)
    with committed():
        waiting = submit(alice, cpus=8)
    Job.objects.filter(pk=waiting.pk).update(status=JobStatus.QUEUED, attempt=0)
    waiting.attempts.all().delete()
    Host.objects.filter(pk=cheap.pk).update(is_available=False)

    # when
    soon = jobs_reap_pass(now=timezone.now() + timedelta(seconds=5))
    with committed():
        jobs_reap_pass(
            now=timezone.now() + timedelta(seconds=settings.JOB_QUEUE_TIMEOUT_SECONDS + 5)
        )

    # then
    assert soon.jobs_offered == 0
    waiting.refresh_from_db()
    assert waiting.status == "failed"
    assert waiting.status_reason == (
        f"no host took the job within {settings.JOB_QUEUE_TIMEOUT_SECONDS} s "
        "(waiting for a host with 8 CPUs and 1024 MB of memory to come online)"
    )


def test_a_heartbeat_renews_leases_and_repeats_cancels(alice, client_for, cheap, funded, committed):
    # given: a running job whose owner asked to cancel it
    with committed():
        job = submit(alice)
    _run(job, cheap, 1, committed)
    with committed():
        client_for(alice).post(f"/api/v1/jobs/{job.pk}/cancel/")

    # when: the agent heartbeats with it and a stranger's attempt
    replies = say(
        cheap,
        "heartbeat",
        load=0.5,
        is_available=True,
        unavailable_reason="",
        running_jobs=[{"job_id": job.pk, "attempt": 1}, {"job_id": 999_999, "attempt": 2}],
    )

    # then
    assert replies == [
        ("job.cancel", {"job_id": job.pk, "attempt": 1, "reason": "cancelled by the owner"}),
        (
            "job.cancel",
            {
                "job_id": 999_999,
                "attempt": 2,
                "reason": "stale attempt: the server no longer runs it on this host",
            },
        ),
    ]


def test_a_reconnecting_agent_gets_its_open_offers_again(alice, cheap, funded, committed):
    # given
    with committed():
        job = submit(alice)

    # when
    with committed():
        keep, kill, replies = resume_decide(cheap.pk, [])

    # then
    assert (keep, kill) == ([], [])
    assert [(kind, data["job_id"], data["attempt"]) for kind, data in replies] == [
        ("job.offer", job.pk, 1)
    ]


def test_a_heartbeat_costs_a_fixed_number_of_queries(
    alice, cheap, funded, committed, django_assert_num_queries
):
    # given: three running jobs
    refs = []
    for _ in range(3):
        with committed():
            job = submit(alice)
        _run(job, cheap, 1, committed)
        refs.append({"job_id": job.pk, "attempt": 1})

    # when / then: the open attempts with their cancel requests, then the lease renewal
    with django_assert_num_queries(2):
        say(
            cheap,
            "heartbeat",
            load=0.1,
            is_available=True,
            unavailable_reason="",
            running_jobs=refs,
        )


def test_the_ledger_stays_consistent_through_loss_retry_and_finish(
    alice, cheap, dear, funded, committed
):
    # given: a job lost on one host and finished on the other
    with committed():
        job = submit(alice)
    _run(job, cheap, 1, committed)
    lease = lease_of(job)
    Host.objects.filter(pk=dear.pk).update(last_seen_at=lease)
    with committed():
        jobs_reap_pass(now=lease + timedelta(seconds=1))
    _run(job, dear, 2, committed)
    with committed():
        say(dear, "job.finished", **finished(job, 2))

    # when
    report = ledger_reconcile(job_facts=job_facts)

    # then: every invariant holds, the job ones included
    funded.check()
    assert "finished_job_escrow_empty" in report.checks
    assert report.problems == []
    assert funded.escrow[job.pk] == 0
    assert funded.keys == [f"job-hold:{job.pk}", f"job-release:{job.pk}"]


def test_reconciliation_asks_the_jobs_app_by_default():
    # given: tests start without job facts (tests/conftest.py)
    assert providers.job_facts is None
    # when: what JobsConfig.ready does at startup
    ledger_providers_register()
    # then
    assert providers.job_facts is job_facts


def test_job_facts_call_a_job_finished_once_settled_or_past_the_grace(alice, db):
    # given
    now = timezone.now()
    common = {
        "owner": alice,
        "placement": "auto",
        "max_attempts": 3,
        "entrypoint": "main.py",
        "cpus": 1,
        "memory_mb": 256,
        "timeout_seconds": 60,
        "max_cost_micros": 700,
    }
    running = Job.objects.create(status="running", **common)
    settled = Job.objects.create(status="succeeded", hold_released_at=now, **common)
    settling = Job.objects.create(status="failed", finished_at=now, **common)
    stuck = Job.objects.create(status="failed", finished_at=now - timedelta(hours=1), **common)

    # when
    facts = job_facts(frozenset({running.pk, settled.pk, settling.pk, stuck.pk, 999_999}))

    # then: a job that doesn't exist runs nothing, so its escrow must be empty
    assert {pk: (f.is_finished, f.cap_micros) for pk, f in facts.items()} == {
        running.pk: (False, 700),
        settled.pk: (True, 700),
        settling.pk: (False, 700),
        stuck.pk: (True, 700),
        999_999: (True, None),
    }


def test_reconciliation_reports_a_hold_whose_job_is_gone(alice, cheap, funded, committed):
    # given: a held job whose row went (by hand, or by a bug)
    with committed():
        job = submit(alice)
    Job.objects.filter(pk=job.pk).delete()

    # when
    report = ledger_reconcile(job_facts=job_facts)

    # then
    assert [(p.invariant, p.job_id, p.actual_micros) for p in report.problems] == [
        ("finished_job_escrow_empty", job.pk, job.max_cost_micros)
    ]


def test_one_failing_reaper_step_rolls_back_alone(
    alice, cheap, dear, funded, committed, monkeypatch
):
    # given: two offers past their expiry, and expiring the first one fails half way
    with committed():
        first, second = submit(alice), submit(alice)
    later = second.attempts.get().offer_expires_at + timedelta(seconds=1)
    real = offer_expire

    def flaky(attempt_id, **kwargs):
        if attempt_id == first.attempts.get().pk:
            JobAttempt.objects.filter(pk=attempt_id).update(reason="half done")
            raise RuntimeError("boom")
        return real(attempt_id, **kwargs)

    monkeypatch.setattr("jobs.tasks.offer_expire", flaky)

    # when
    with committed():
        report = jobs_reap_pass(now=later)

    # then: the second offer expired and went to the other host; the first is as it was
    assert report.offers_expired == 1
    assert _job(second) == (JobStatus.OFFERED, 2, dear.pk)
    assert _job(first)[:2] == (JobStatus.OFFERED, 1)
    assert first.attempts.get().reason == ""


def test_a_settlement_that_fails_leaves_the_job_running_and_the_hold_held(
    alice, cheap, funded, committed, monkeypatch
):
    # given: a running job, and a release that fails
    with committed():
        job = submit(alice)
        _run(job, cheap, 1, committed)

    def broken(**kwargs):
        raise RuntimeError("the ledger went away")

    monkeypatch.setattr("jobs.billing.hold_release", broken)

    # when: the agent reports the job finished, in the message's one transaction
    with pytest.raises(RuntimeError):
        durable_call(say, cheap, "job.finished", **finished(job, 1))

    # then: nothing of the ending stayed: still running, still held
    assert _job(job) == (JobStatus.RUNNING, 1, cheap.pk)
    assert job.attempts.get().status == AttemptStatus.RUNNING
    assert funded.escrow[job.pk] == job.max_cost_micros
    assert funded.keys == [f"job-hold:{job.pk}"]
