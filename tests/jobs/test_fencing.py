"""Fencing: stale attempts are refused and killed, duplicates are no-ops, hosts speak only
for their own attempts. On every refusal nothing changes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hosts.models import Host
from jobs.models import Job, JobAttempt, JobLogChunk
from jobs.tasks import jobs_reap_pass
from tests.jobs.helpers import finished, lease_of, reply_types, say, submit, usage


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, 5_000_000)
    return ledger


@pytest.fixture
def host_a(make_host, hana):
    return make_host(hana, "a", cpu_core_hour_micros=50_000)


@pytest.fixture
def host_b(make_host, hana):
    return make_host(hana, "b", cpu_core_hour_micros=90_000)


def snapshot(job: Job) -> tuple[object, ...]:
    job.refresh_from_db()
    attempts = tuple(
        JobAttempt.objects.filter(job=job)
        .order_by("number")
        .values_list("number", "host_id", "status", "lease_expires_at", "log_offset", "usage_seq")
    )
    hosts = tuple(Host.objects.order_by("pk").values_list("jobs_finished", "jobs_lost"))
    return (
        job.status,
        job.status_reason,
        job.attempt,
        job.host_id,
        job.exit_code,
        attempts,
        hosts,
        JobLogChunk.objects.count(),
    )


def _stale_replies(job: Job, attempt: int, why: str, replies) -> None:
    assert reply_types(replies) == ["error", "job.cancel"]
    assert replies[0][1]["code"] == "stale_attempt"
    assert replies[1][1] == {
        "job_id": job.pk,
        "attempt": attempt,
        "reason": f"stale attempt: {why}",
    }


def test_a_late_accept_after_the_offer_expired_is_refused_and_killed(
    alice, host_a, host_b, funded, committed
):
    # given: the offer to host A expired and went to host B
    with committed():
        job = submit(alice)
        jobs_reap_pass(now=job.attempts.get().offer_expires_at + timedelta(seconds=1))
    before = snapshot(job)

    # when
    with committed():
        replies = say(host_a, "job.accept", job_id=job.pk, attempt=1)

    # then
    _stale_replies(job, 1, "superseded by attempt 2", replies)
    assert snapshot(job) == before
    assert before[2:4] == (2, host_b.pk)


@pytest.mark.parametrize(
    "message",
    [
        lambda job: ("job.started", {"job_id": job.pk, "attempt": 1, "phase": "running"}),
        lambda job: ("job.log", {"job_id": job.pk, "attempt": 1, "offset": 0, "data": "x"}),
        lambda job: ("job.usage", usage(job, 1, seq=5)),
        lambda job: ("job.finished", finished(job, 1)),
    ],
)
def test_messages_of_a_lost_attempt_change_nothing_and_kill_the_container(
    alice, host_a, host_b, funded, committed, message
):
    # given: attempt 1 on host A was lost; attempt 2 runs on host B
    with committed():
        job = submit(alice)
        say(host_a, "job.accept", job_id=job.pk, attempt=1)
    lease = lease_of(job)
    Host.objects.update(last_seen_at=lease)
    with committed():
        jobs_reap_pass(now=lease + timedelta(seconds=1))
        say(host_b, "job.accept", job_id=job.pk, attempt=2)
    before = snapshot(job)
    kind, data = message(job)

    # when
    with committed():
        replies = say(host_a, kind, **data)

    # then
    _stale_replies(job, 1, "superseded by attempt 2", replies)
    assert snapshot(job) == before
    assert before[0] == "accepted"


def test_duplicates_are_no_ops(alice, host_a, funded, committed):
    # given
    with committed():
        job = submit(alice)
        say(host_a, "job.accept", job_id=job.pk, attempt=1)
        say(host_a, "job.started", job_id=job.pk, attempt=1, phase="running")
    running = snapshot(job)

    # when: accept and started again, and an older phase
    with committed():
        again = [
            say(host_a, "job.accept", job_id=job.pk, attempt=1),
            say(host_a, "job.started", job_id=job.pk, attempt=1, phase="running"),
            say(host_a, "job.started", job_id=job.pk, attempt=1, phase="preparing"),
        ]

    # then
    assert again == [[], [], []]
    assert snapshot(job) == running

    # and when finished twice
    with committed():
        first = say(host_a, "job.finished", **finished(job, 1))
    done = snapshot(job)
    with committed():
        second = say(host_a, "job.finished", **finished(job, 1))

    # then
    assert (reply_types(first), reply_types(second)) == (["ack"], ["ack"])
    assert snapshot(job) == done
    assert done[-2] == ((1, 0),)
    assert funded.wallets[alice.pk] == 5_000_000
    assert [k for k in funded.keys if k.startswith("job-release")] == [f"job-release:{job.pk}"]


def test_a_repeated_usage_report_changes_nothing(alice, host_a, funded, committed):
    # given
    with committed():
        job = submit(alice)
        say(host_a, "job.accept", job_id=job.pk, attempt=1)
        say(host_a, "job.usage", **usage(job, 1, seq=2, cpu_seconds=1.5))
    before = snapshot(job)

    # when: the same seq again, then an older one
    with committed():
        same = say(host_a, "job.usage", **usage(job, 1, seq=2, cpu_seconds=1.9))
        older = say(host_a, "job.usage", **usage(job, 1, seq=1))

    # then: acknowledged, not recorded
    assert same == [("usage.ack", {"job_id": job.pk, "attempt": 1, "seq": 2, "stop": False})]
    assert older == [("usage.ack", {"job_id": job.pk, "attempt": 1, "seq": 1, "stop": False})]
    assert snapshot(job) == before
    assert job.attempts.get().usage["cpu_seconds"] == 1.5


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("job.accept", {}),
        ("job.reject", {"reason": "mine now"}),
        ("job.started", {"phase": "running"}),
        ("job.log", {"offset": 0, "data": "forged"}),
        ("job.usage", None),
        ("job.finished", None),
    ],
)
def test_host_b_cannot_speak_for_host_a(alice, host_a, host_b, funded, committed, kind, data):
    # given: the job is offered to host A
    with committed():
        job = submit(alice)
    if kind not in ("job.accept", "job.reject"):
        with committed():
            say(host_a, "job.accept", job_id=job.pk, attempt=1)
    before = snapshot(job)
    if data is None:
        data = usage(job, 1) if kind == "job.usage" else finished(job, 1)
    else:
        data = {"job_id": job.pk, "attempt": 1, **data}

    # when
    with committed():
        replies = say(host_b, kind, **data)

    # then
    assert replies == [
        (
            "error",
            {
                "code": "not_your_job",
                "message": f"job {job.pk} attempt 1 was not offered to this host",
                "ref_id": replies[0][1]["ref_id"],
            },
        )
    ]
    assert snapshot(job) == before


def test_a_job_that_does_not_exist_is_not_yours(host_a, db):
    replies = say(host_a, "job.accept", job_id=424242, attempt=1)
    assert replies[0][1]["code"] == "not_your_job"
