"""Scheduling (issue 12): jobs wait for capacity, hosts run several jobs, busy is never held
against a job, host faults are the host's, not-ready and unisolated hosts get no strangers'
jobs, a dropped socket loses its attempts after a short grace."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from config.errors import Conflict
from hosts.models import Host
from hosts.services import host_hello
from jobs.agent_socket import disconnect_accept
from jobs.heartbeat_batch import heartbeat_accept
from jobs.models import AttemptStatus, Job, JobStatus
from jobs.selectors import job_queue_position
from jobs.services.dispatch import _LOOKAHEAD, jobs_queued
from jobs.tasks import jobs_reap_pass
from tests.hosts.factories import credential_create, specs
from tests.jobs.conftest import Wire, envelope
from tests.jobs.helpers import finished, lease_of, say, submit, usage

FUNDS = 50_000_000


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, FUNDS)
    return ledger


@pytest.fixture
def one_slot(make_host, hana):
    return make_host(hana, "one", cpu_core_hour_micros=50_000, slots=1)


@pytest.fixture
def other(make_host, hana):
    return make_host(hana, "other", cpu_core_hour_micros=90_000, slots=1)


def _state(job: Job) -> tuple[str, int, int | None]:
    job.refresh_from_db()
    return job.status, job.attempt, job.host_id


def _run(job: Job, host: Host, attempt: int) -> None:
    say(host, "job.accept", job_id=job.pk, attempt=attempt)
    say(host, "job.started", job_id=job.pk, attempt=attempt, phase="running")


# --- the queue ---------------------------------------------------------------------------------


def test_three_jobs_to_a_one_slot_host_wait_their_turn_and_all_run(
    alice, one_slot, funded, wire: Wire, committed
):
    # given: three jobs for the one slot
    with committed():
        jobs = [submit(alice, host=one_slot) for _ in range(3)]

    # then: the first is offered, the others wait in order, saying why
    assert [_state(j)[0] for j in jobs] == ["offered", "queued", "queued"]
    assert [job_queue_position(j) for j in jobs] == [None, 1, 2]
    assert Job.objects.get(pk=jobs[1].pk).waiting_reason == (
        "waiting for the chosen host: the host is busy with other jobs"
    )

    # when each ends, the next is offered at once (no reaper tick)
    for turn, job in enumerate(jobs):
        assert _state(job)[0] == "offered"
        with committed():
            _run(job, one_slot, 1)
            say(one_slot, "job.finished", **finished(job, 1))
        assert _state(job)[0] == "succeeded"
        assert [_state(j)[0] for j in jobs[turn + 1 : turn + 2]] in ([], ["offered"])

    # then all three ran there, one after the other, and nobody paid for waiting
    assert [_state(j) for j in jobs] == [("succeeded", 1, one_slot.pk)] * 3
    assert funded.wallets[alice.pk] == FUNDS
    assert [kind for _, kind, _ in wire.sent] == ["job.offer"] * 3


def test_a_multi_slot_host_runs_jobs_side_by_side_up_to_its_slots(
    alice, make_host, hana, funded, committed
):
    # given: a host of 8 cores that gives 3 slots
    host = make_host(hana, "three", slots=3)

    # when: five one-core jobs come
    with committed():
        jobs = [submit(alice) for _ in range(5)]

    # then: three are offered to it at once, two wait
    assert [_state(j)[0] for j in jobs] == ["offered"] * 3 + ["queued"] * 2
    assert Job.objects.get(pk=jobs[3].pk).waiting_reason == (
        "waiting for a host with 1 CPUs and 1024 MB of memory free: the one host that fits is busy"
    )
    assert [job_queue_position(j) for j in jobs[3:]] == [1, 2]

    # and when one finishes, the next is offered there at once
    with committed():
        _run(jobs[0], host, 1)
        say(host, "job.finished", **finished(jobs[0], 1))
    assert [_state(j)[0] for j in jobs] == ["succeeded", "offered", "offered", "offered", "queued"]


def test_a_freed_slot_goes_to_the_first_queued_job_that_fits_its_room_past_bigger_ones(
    alice, make_host, hana, funded, committed
):
    # given: a two-slot host of 8 cores running two 4-core jobs, and queued behind them more
    # 6-core jobs than a freed slot looks at, then a 2-core job
    host = make_host(hana, "two", slots=2)
    with committed():
        running = [submit(alice, cpus=Decimal(4)) for _ in range(2)]
        bigger = [submit(alice, cpus=Decimal(6)) for _ in range(_LOOKAHEAD + 1)]
        small = submit(alice, cpus=Decimal(2))
    assert [_state(j)[0] for j in running] == ["offered", "offered"]

    # when: one of the running jobs ends (one slot and 4 cores free)
    with committed():
        _run(running[0], host, 1)
        say(host, "job.finished", **finished(running[0], 1))

    # then: the 2-core job is offered there at once; the 6-core ones still wait for room
    assert _state(small) == ("offered", 1, host.pk)
    assert [_state(j)[0] for j in bigger] == ["queued"] * len(bigger)


def test_busy_is_never_held_against_the_job(alice, one_slot, funded, wire: Wire, committed):
    # given: an auto-placed job offered to the only host
    with committed():
        job = submit(alice)

    # when: the host says busy (it had a local job the server did not count)
    with committed():
        say(one_slot, "job.reject", job_id=job.pk, attempt=1, reason="at capacity", code="busy")

    # then: the job waits, not failed; nothing is remembered against it for good
    assert _state(job)[:2] == ("queued", 1)
    job.refresh_from_db()
    assert "busy" in job.status_reason
    assert job.rejections.get().kind == "busy"

    # and a reaper tick inside JOB_REOFFER_AFTER_SECONDS does not offer it there again
    soon = jobs_reap_pass(now=timezone.now() + timedelta(seconds=2))
    assert (soon.jobs_offered, _state(job)[0]) == (0, "queued")

    # but one after it does
    with committed():
        later = jobs_reap_pass(now=timezone.now() + timedelta(seconds=11))
    assert later.jobs_offered == 1
    assert _state(job) == ("offered", 2, one_slot.pk)
    assert funded.wallets[alice.pk] == FUNDS - job.max_cost_micros


def test_a_chosen_host_that_is_busy_keeps_the_job_waiting(alice, one_slot, funded, committed):
    with committed():
        job = submit(alice, host=one_slot)
        say(one_slot, "job.reject", job_id=job.pk, attempt=1, reason="at capacity", code="busy")

    assert _state(job)[:2] == ("queued", 1)
    with committed():
        jobs_reap_pass(now=timezone.now() + timedelta(seconds=11))
    assert _state(job) == ("offered", 2, one_slot.pk)


def test_a_real_refusal_is_still_remembered(alice, one_slot, other, funded, committed):
    with committed():
        job = submit(alice)
        say(one_slot, "job.reject", job_id=job.pk, attempt=1, reason="policy", code="refused")
        say(other, "job.reject", job_id=job.pk, attempt=2, reason="policy")

    job.refresh_from_db()
    assert (job.status, job.status_reason) == ("failed", "every host that fits refused the job")
    assert funded.wallets[alice.pk] == FUNDS


# --- lost attempts -----------------------------------------------------------------------------


def test_a_job_lost_by_the_only_host_runs_there_again_instead_of_failing(
    alice, one_slot, funded, committed
):
    # given: the job runs on the only host, which goes silent past its lease (a server outage)
    with committed():
        job = submit(alice)
        _run(job, one_slot, 1)
    lease = lease_of(job)
    Host.objects.filter(pk=one_slot.pk).update(last_seen_at=lease)

    # when
    with committed():
        jobs_reap_pass(now=lease + timedelta(seconds=1))

    # then: attempt 1 is lost, and the job (with attempts left) goes back to that host
    assert job.attempts.get(number=1).status == AttemptStatus.LOST
    assert _state(job) == ("offered", 2, one_slot.pk)


# --- host faults -------------------------------------------------------------------------------


def _host_fault(job: Job, attempt: int) -> dict[str, Any]:
    return finished(
        job,
        attempt,
        "failed",
        reason="the host could not prepare the job",
        exit_code=None,
        fault="host",
        detail="500 Server Error for http+docker://localhost/v1.47/containers/create: "
        "No such image: communipute/runner:latest",
        usage=usage(job, attempt, seq=3, cpu_seconds=1.0, wall_seconds=4.0, is_final=True),
    )


def test_a_host_fault_is_not_charged_and_the_job_runs_elsewhere(
    alice, one_slot, other, funded, committed
):
    # given: the job runs on the cheaper host and reports some usage
    with committed():
        job = submit(alice)
        _run(job, one_slot, 1)
        say(one_slot, "job.usage", **usage(job, 1, seq=1, cpu_seconds=1.0, wall_seconds=3.0))

    # when: its container can't be supervised (the host's fault)
    with committed():
        replies = say(one_slot, "job.finished", **_host_fault(job, 1))

    # then: the renter is not charged, the job goes to the other host, the reason is a
    # sentence and the engine's detail is the owner's
    assert [kind for kind, _ in replies] == ["ack"]
    assert _state(job) == ("offered", 2, other.pk)
    faulted = job.attempts.get(number=1)
    assert (faulted.status, faulted.fault) == ("lost", "host")
    assert "No such image" in faulted.fault_detail
    assert "No such image" not in faulted.reason
    assert faulted.reason == "the host could not run the job: the host could not prepare the job"
    host = Host.objects.get(pk=one_slot.pk)
    assert (host.host_faults, host.host_faults_in_row, host.jobs_lost) == (1, 1, 1)
    assert "No such image" in host.last_fault_detail
    with committed():
        _run(job, other, 2)
        say(other, "job.finished", **finished(job, 2))
    job.refresh_from_db()
    assert (job.status, job.cost_micros) == ("succeeded", 0)
    assert funded.wallets[alice.pk] == FUNDS


def test_host_faults_in_a_row_quarantine_the_host_until_it_reports_ready(
    alice, one_slot, other, funded, committed, settings
):
    # given: the bad host is the cheaper one, so every job goes there first
    settings.HOST_FAULT_QUARANTINE = 3
    jobs = []
    for _ in range(3):
        with committed():
            job = submit(alice)
            jobs.append(job)
            assert _state(job)[2] == one_slot.pk
            _run(job, one_slot, 1)
            say(one_slot, "job.finished", **_host_fault(job, 1))
        # the job went to the good host; finish it there
        assert _state(job) == ("offered", 2, other.pk)
        with committed():
            _run(job, other, 2)
            say(other, "job.finished", **finished(job, 2))

    # then: quarantined after the third; the next job goes straight to the good host
    host = Host.objects.get(pk=one_slot.pk)
    assert host.fault_quarantined_at is not None
    with committed():
        fourth = submit(alice)
    assert _state(fourth)[2] == other.pk
    assert all(_state(j)[0] == "succeeded" for j in jobs)
    assert funded.wallets[alice.pk] == FUNDS - fourth.max_cost_micros

    # and when its agent says hello again, ready, the quarantine lifts
    credential_create(host)
    host_hello(
        host_id=host.pk,
        connection_id="conn-after-fix",
        hello={
            "agent_version": "0.2.0",
            "protocol_version": 1,
            "specs": specs(cpus=8, memory_mb=16384),  # type: ignore[typeddict-item]
            "running_jobs": [],
            "is_available": True,
            "is_draining": False,
            "readiness": {"ready": True, "reason": "", "isolation": "docker"},
        },
    )
    lifted = Host.objects.get(pk=host.pk)
    assert (lifted.fault_quarantined_at, lifted.host_faults_in_row) == (None, 0)


def test_a_job_fails_only_after_job_max_host_faults(
    alice, make_host, hana, funded, committed, settings
):
    settings.JOB_MAX_HOST_FAULTS = 2
    settings.HOST_FAULT_QUARANTINE = 10
    bad = [make_host(hana, f"bad{i}", slots=1) for i in range(3)]
    with committed():
        job = submit(alice)
    for attempt in (1, 2):
        host = Host.objects.get(pk=job.attempts.get(number=attempt).host_id)
        with committed():
            _run(job, host, attempt)
            say(host, "job.finished", **_host_fault(job, attempt))

    job.refresh_from_db()
    assert job.status == "failed"
    assert job.status_reason.endswith("2 hosts could not run the job; nothing was charged")
    assert funded.wallets[alice.pk] == FUNDS
    assert len({a.host_id for a in job.attempts.all()}) == 2
    assert len(bad) == 3


def test_a_host_fault_reject_sends_the_job_elsewhere_and_counts_on_the_host(
    alice, one_slot, other, funded, committed
):
    with committed():
        job = submit(alice)
        say(
            one_slot,
            "job.reject",
            job_id=job.pk,
            attempt=1,
            reason="the container engine is not answering",
            code="host_fault",
        )

    assert _state(job) == ("offered", 2, other.pk)
    faulted = Host.objects.get(pk=one_slot.pk)
    assert faulted.host_faults == 1
    # not ready until its agent's next readiness report: the next job is not offered to it
    assert (faulted.is_ready, faulted.not_ready_reason) == (
        False,
        "the container engine is not answering",
    )
    with committed():
        second = submit(alice)
    # (the other host's one slot is taken by the first job, so it waits)
    assert _state(second)[:2] == ("queued", 0)
    assert not second.attempts.filter(host_id=one_slot.pk).exists()


def test_a_heartbeat_saying_ready_does_not_lift_a_fault_quarantine(
    alice, one_slot, funded, committed
):
    now = timezone.now()
    Host.objects.filter(pk=one_slot.pk).update(
        connection_id="conn-1", fault_quarantined_at=now, host_faults_in_row=3
    )
    beat = {"load": 0.1, "is_available": True, "unavailable_reason": "", "running_jobs": []}
    beat["readiness"] = {"ready": True, "reason": "", "isolation": "docker"}

    heartbeat_accept(one_slot.pk, "conn-1", envelope("heartbeat", **beat))

    assert Host.objects.get(pk=one_slot.pk).fault_quarantined_at == now


# --- readiness and isolation -------------------------------------------------------------------


def test_a_host_that_is_not_ready_is_offered_nothing(alice, one_slot, other, funded, committed):
    Host.objects.filter(pk=one_slot.pk).update(
        is_ready=False, not_ready_reason="the runner image is missing"
    )
    with committed():
        job = submit(alice)

    assert _state(job)[2] == other.pk


def test_an_unisolated_host_takes_only_its_owners_jobs(
    alice, hana, make_host, funded, ledger, committed
):
    # given: the only host runs jobs without isolation (the agent's process runtime)
    host = make_host(hana, "bare", isolation="none")
    ledger.fund(hana, FUNDS)

    # then: a stranger's job is refused at submit, the owner's runs there
    with pytest.raises(Conflict) as refused:
        submit(alice)
    assert refused.value.code == "no_host_fits"
    with committed():
        own = submit(hana)
    assert _state(own) == ("offered", 1, host.pk)


# --- a dropped socket --------------------------------------------------------------------------


def test_a_dropped_socket_loses_what_the_host_ran_after_the_grace_not_the_lease(
    alice, one_slot, other, funded, committed, settings
):
    # given: a job running on a host whose socket is live
    settings.HOST_DISCONNECT_GRACE_SECONDS = 20
    Host.objects.filter(pk=one_slot.pk).update(connection_id="conn-1")
    with committed():
        job = submit(alice)
        _run(job, one_slot, 1)
    assert lease_of(job) > timezone.now() + timedelta(seconds=50)

    # when: the socket drops
    disconnect_accept(one_slot.pk, "conn-1")

    # then: the lease now ends within the grace, and the reaper then loses the attempt
    assert lease_of(job) <= timezone.now() + timedelta(seconds=20)
    with committed():
        jobs_reap_pass(now=timezone.now() + timedelta(seconds=21))
    assert job.attempts.get(number=1).status == AttemptStatus.LOST
    assert _state(job) == ("offered", 2, other.pk)


def test_a_disconnect_of_a_replaced_socket_cuts_no_lease(alice, one_slot, funded, committed):
    Host.objects.filter(pk=one_slot.pk).update(connection_id="conn-2")
    with committed():
        job = submit(alice)
        _run(job, one_slot, 1)
    before = lease_of(job)

    disconnect_accept(one_slot.pk, "conn-1")

    assert lease_of(job) == before
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_the_local_demo_lets_anyone_use_an_unisolated_host(
    alice, hana, make_host, funded, committed, settings
):
    settings.PLACEMENT_ALLOW_UNISOLATED_HOSTS = True
    host = make_host(hana, "bare", isolation="none")

    with committed():
        job = submit(alice)

    assert _state(job) == ("offered", 1, host.pk)


def test_a_host_that_reports_ready_again_gets_the_waiting_job_at_once(
    alice, one_slot, funded, committed
):
    # given: a job waits for the one slot; the host then fails its self-check, and the first
    # job ends
    Host.objects.filter(pk=one_slot.pk).update(connection_id="conn-1")
    with committed():
        first, job = submit(alice, host=one_slot), submit(alice, host=one_slot)
    Host.objects.filter(pk=one_slot.pk).update(
        is_ready=False, not_ready_reason="the engine does not answer"
    )
    with committed():
        _run(first, one_slot, 1)
        say(one_slot, "job.finished", **finished(first, 1))
        jobs_reap_pass()
    assert _state(job)[0] == "queued"

    # when: its next heartbeat says ready
    beat = {"load": 0.1, "is_available": True, "unavailable_reason": "", "running_jobs": []}
    beat["readiness"] = {"ready": True, "reason": "", "isolation": "docker"}
    with committed():
        heartbeat_accept(one_slot.pk, "conn-1", envelope("heartbeat", **beat))

    # then: the job is offered in that heartbeat's transaction, not on a reaper tick
    assert _state(job) == ("offered", 1, one_slot.pk)


def test_while_every_host_is_full_the_reaper_only_fails_jobs_past_their_queue_timeout(
    alice, one_slot, funded, committed, settings
):
    # given: the only slot taken, three jobs waiting
    with committed():
        running = submit(alice)
        waiting = [submit(alice) for _ in range(3)]
    assert _state(running)[0] == "offered"
    _run(running, one_slot, 1)
    running.attempts.update(lease_expires_at=timezone.now() + timedelta(hours=1))
    Host.objects.filter(pk=one_slot.pk).update(last_seen_at=timezone.now())

    # then: a tick places nothing and does not even try (capacity freeing offers them)
    assert jobs_queued(timezone.now()) == []
    # but a tick past their queue timeout takes them up to fail them
    later = timezone.now() + timedelta(seconds=settings.JOB_QUEUE_TIMEOUT_SECONDS + 1)
    Host.objects.filter(pk=one_slot.pk).update(last_seen_at=later)
    assert jobs_queued(later) == [j.pk for j in waiting]
    with committed():
        jobs_reap_pass(now=later)
    assert [_state(j)[0] for j in waiting] == ["failed"] * 3
    assert funded.wallets[alice.pk] == FUNDS - running.max_cost_micros

    # and with a slot free, a tick looks at the queue again
    with committed():
        again = submit(alice)
    with committed():
        say(one_slot, "job.finished", **finished(running, 1))
    assert _state(again)[0] == "offered"  # capacity freeing offered it at once
    with committed():
        queued_again = submit(alice)
    Host.objects.filter(pk=one_slot.pk).update(slots=2, last_seen_at=timezone.now())
    assert jobs_queued(timezone.now()) == [queued_again.pk]
