"""Races on PostgreSQL with real threads: a job is never both requeued and run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from hosts.models import Host
from jobs.models import AttemptStatus, Job, JobAttempt
from jobs.services.dispatch import attempt_lose, job_offer_next, offer_expire
from tests.jobs.helpers import finished, lease_of, say, submit

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROUNDS = 6


def race(*actions: Callable[[], Any]) -> list[Any]:
    """Run the actions in threads released together; return their results (or exceptions)."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int, action: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = action()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.fixture
def hosts(make_host, hana):
    return make_host(hana, "a", cpu_core_hour_micros=50_000), make_host(hana, "b")


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, 100_000_000)
    return ledger


def test_two_reapers_expire_an_offer_once(alice, hosts, funded, wire):
    for _ in range(ROUNDS):
        # given
        job = submit(alice)
        attempt = job.attempts.get()
        later = attempt.offer_expires_at + timedelta(seconds=1)

        # when
        expire = partial(offer_expire, attempt.pk, now=later)
        results = race(expire, expire)

        # then
        assert sorted(results) == [False, True]
        job.refresh_from_db()
        assert (job.status, job.attempt) == ("offered", 2)
        assert job.attempts.count() == 2


def test_a_reaper_racing_a_late_accept_never_gives_both_a_requeue_and_a_run(
    alice, hosts, funded, wire
):
    host_a, _ = hosts
    outcomes = set()
    for _ in range(ROUNDS):
        # given: the offer to host A has just expired
        job = submit(alice)
        attempt = job.attempts.get()
        assert attempt.host_id == host_a.pk
        later = attempt.offer_expires_at + timedelta(seconds=1)

        # when
        expired, replies = race(
            partial(offer_expire, attempt.pk, now=later),
            partial(say, host_a, "job.accept", job_id=job.pk, attempt=1),
        )

        # then: exactly one of them won
        attempt.refresh_from_db()
        job.refresh_from_db()
        if expired is True:
            assert [kind for kind, _ in replies] == ["error", "job.cancel"]
            assert attempt.status == AttemptStatus.EXPIRED
            assert (job.status, job.attempt) == ("offered", 2)
        else:
            assert (expired, replies) == (False, [])
            assert attempt.status == AttemptStatus.ACCEPTED
            assert (job.status, job.attempt) == ("accepted", 1)
            assert job.attempts.count() == 1
        outcomes.add(expired)
    assert outcomes <= {True, False}


def test_a_lease_reaper_racing_a_late_finish_never_gives_both(alice, hosts, funded, wire):
    host_a, _ = hosts
    for _ in range(ROUNDS):
        # given: attempt 1 runs on host A and its lease has just expired (losses of earlier
        # rounds forgotten, so that placement still prefers host A)
        Host.objects.update(jobs_lost=0, jobs_finished=0)
        job = submit(alice)
        assert job.host_id == host_a.pk
        say(host_a, "job.accept", job_id=job.pk, attempt=1)
        attempt = job.attempts.get()
        later = lease_of(job) + timedelta(seconds=1)
        Host.objects.update(last_seen_at=later)

        # when
        lost, replies = race(
            partial(attempt_lose, attempt.pk, "lease expired", now=later),
            partial(say, host_a, "job.finished", **finished(job, 1)),
        )

        # then
        attempt.refresh_from_db()
        job.refresh_from_db()
        if lost is True:
            assert [kind for kind, _ in replies] == ["error", "job.cancel"]
            assert attempt.status == AttemptStatus.LOST
            assert (job.status, job.attempt) == ("offered", 2)
        else:
            assert (lost, [kind for kind, _ in replies]) == (False, ["ack"])
            assert attempt.status == AttemptStatus.SUCCEEDED
            assert (job.status, job.attempt) == ("succeeded", 1)
            assert job.attempts.count() == 1
        Host.objects.update(last_seen_at=timezone.now())


def test_concurrent_dispatchers_make_one_offer(alice, hosts, funded, wire):
    for _ in range(ROUNDS):
        # given: a queued, funded job with no offer yet
        job = submit(alice)
        job.attempts.all().delete()
        Job.objects.filter(pk=job.pk).update(status="queued", attempt=0)

        # when
        offer = partial(job_offer_next, job.pk)
        results = race(offer, offer)

        # then
        assert sum(isinstance(r, JobAttempt) for r in results) == 1
        assert results.count(None) == 1
        assert job.attempts.count() == 1


def test_two_hosts_freeing_capacity_at_once_offer_each_queued_job_once(
    alice, make_host, hana, funded, wire
):
    # given: two one-slot hosts, each running a job, and queued jobs waiting for a slot
    one = make_host(hana, "one", slots=1)
    two = make_host(hana, "two", slots=1)
    for _ in range(ROUNDS):
        running = [submit(alice), submit(alice)]
        waiting = [submit(alice) for _ in range(3)]
        by_host = {job.pk: Host.objects.get(pk=job.attempts.get().host_id) for job in running}
        assert {h.pk for h in by_host.values()} == {one.pk, two.pk}
        for job in running:
            say(by_host[job.pk], "job.accept", job_id=job.pk, attempt=1)
            say(by_host[job.pk], "job.started", job_id=job.pk, attempt=1, phase="running")
        assert all(job.attempts.count() == 0 for job in waiting)

        # when: both finish at the same moment (each frees its slot and offers the queue)
        results = race(
            *(partial(say, by_host[job.pk], "job.finished", **finished(job, 1)) for job in running)
        )

        # then: no error, no queued job offered twice, no host over its one slot
        assert [[kind for kind, _ in replies] for replies in results] == [["ack"], ["ack"]]
        for job in waiting:
            assert job.attempts.count() <= 1
        for host in (one, two):
            assert JobAttempt.objects.filter(host=host, status="offered").count() <= 1
        offered = sum(job.attempts.count() for job in waiting)
        assert 1 <= offered <= 2
        # clear the round: what was offered and what waits is cancelled
        for job in waiting:
            job.attempts.all().delete()
        Job.objects.filter(pk__in=[j.pk for j in waiting]).update(status="cancelled")
