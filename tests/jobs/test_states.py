"""The job and attempt state machines: the tables (pure) and the conditional UPDATEs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import AttemptStatus, Job, JobAttempt, JobStatus
from jobs.states import (
    ALLOWED_FROM,
    ATTEMPT_ALLOWED_FROM,
    FINAL,
    IllegalTransition,
    attempt_transition,
    job_transition,
    transition_sources,
)

S = JobStatus
LEGAL = {
    (S.QUEUED, S.OFFERED),
    (S.OFFERED, S.ACCEPTED),
    (S.OFFERED, S.QUEUED),
    (S.ACCEPTED, S.PREPARING),
    (S.ACCEPTED, S.RUNNING),
    (S.PREPARING, S.RUNNING),
    *{(a, S.QUEUED) for a in (S.ACCEPTED, S.PREPARING, S.RUNNING)},
    *{
        (a, end)
        for a in (S.ACCEPTED, S.PREPARING, S.RUNNING)
        for end in (S.SUCCEEDED, S.TIMED_OUT, S.BUDGET_EXHAUSTED)
    },
    *{(a, end) for a in set(S) - FINAL for end in (S.FAILED, S.CANCELLED)},
}


@pytest.mark.parametrize("source", list(S))
@pytest.mark.parametrize("target", list(S))
def test_the_table_allows_exactly_the_documented_moves(source, target):
    # given / when
    allowed = source in ALLOWED_FROM[target]

    # then
    assert allowed == ((source, target) in LEGAL)


def test_no_move_leaves_a_final_state():
    # given / when
    leaving_final = [t for t, sources in ALLOWED_FROM.items() if sources & FINAL]

    # then
    assert leaving_final == []


def test_asking_for_an_impossible_source_raises_without_the_database():
    # given / when / then
    with pytest.raises(IllegalTransition) as excinfo:
        transition_sources(S.SUCCEEDED, expected_from=[S.QUEUED])
    assert excinfo.value.message == "a job cannot go from queued to succeeded"


@pytest.fixture
def job(alice):
    return Job.objects.create(
        owner=alice,
        placement="auto",
        max_attempts=3,
        entrypoint="main.py",
        cpus=1,
        memory_mb=256,
        timeout_seconds=60,
        max_cost_micros=1_000_000,
    )


def test_a_legal_transition_updates_the_row_and_the_object(job):
    # when
    job_transition(job, S.OFFERED, "offered", attempt=1)

    # then
    job.refresh_from_db()
    assert (job.status, job.status_reason, job.attempt) == (S.OFFERED, "offered", 1)


def test_an_illegal_transition_raises_and_changes_nothing(job):
    # when
    with pytest.raises(IllegalTransition):
        job_transition(job, S.RUNNING, "skipping ahead")

    # then
    job.refresh_from_db()
    assert (job.status, job.status_reason) == (S.QUEUED, "")


def test_a_stale_in_memory_status_does_not_fool_the_update(job):
    # given: another process cancelled the job; this object still says queued
    Job.objects.filter(pk=job.pk).update(status=S.CANCELLED)

    # when
    with pytest.raises(IllegalTransition):
        job_transition(job, S.OFFERED, "offered")

    # then
    assert Job.objects.get(pk=job.pk).status == S.CANCELLED


def test_the_attempt_fence_refuses_another_attempt(job):
    # given
    Job.objects.filter(pk=job.pk).update(status=S.OFFERED, attempt=2)

    # when
    with pytest.raises(IllegalTransition):
        job_transition(job, S.ACCEPTED, "late accept", at_attempt=1)

    # then
    job.refresh_from_db()
    assert (job.status, job.attempt) == (S.OFFERED, 2)


def test_a_final_transition_stamps_finished_at(job):
    # when
    job_transition(job, S.FAILED, "boom")

    # then
    job.refresh_from_db()
    assert job.status == S.FAILED
    assert job.finished_at is not None


A = AttemptStatus
ACTIVE_ATTEMPT = (A.ACCEPTED, A.PREPARING, A.RUNNING)
LEGAL_ATTEMPT = {
    (A.OFFERED, A.ACCEPTED),
    (A.ACCEPTED, A.PREPARING),
    (A.ACCEPTED, A.RUNNING),
    (A.PREPARING, A.RUNNING),
    *{(A.OFFERED, end) for end in (A.REJECTED, A.EXPIRED, A.CANCELLED)},
    *{
        (a, end)
        for a in ACTIVE_ATTEMPT
        for end in (
            A.LOST,
            A.SUCCEEDED,
            A.FAILED,
            A.CANCELLED,
            A.TIMED_OUT,
            A.BUDGET_EXHAUSTED,
        )
    },
}


@pytest.mark.parametrize("source", list(A))
@pytest.mark.parametrize("target", list(A))
def test_the_attempt_table_allows_exactly_the_documented_moves(source, target):
    # given / when
    allowed = source in ATTEMPT_ALLOWED_FROM[target]

    # then
    assert allowed == ((source, target) in LEGAL_ATTEMPT)


@pytest.fixture
def offered(job, make_host, hana):
    host = make_host(hana, "box")
    Job.objects.filter(pk=job.pk).update(status=S.OFFERED, attempt=1, host=host)
    return JobAttempt.objects.create(
        job=job, number=1, host=host, offer_expires_at=timezone.now() + timedelta(seconds=30)
    )


def test_an_attempt_transition_updates_the_row_and_stamps_an_end(offered):
    # when
    attempt_transition(offered, A.REJECTED, "busy")

    # then
    offered.refresh_from_db()
    assert (offered.status, offered.reason) == (A.REJECTED, "busy")
    assert offered.finished_at is not None


def test_an_illegal_attempt_transition_raises_and_changes_nothing(offered):
    # when
    with pytest.raises(IllegalTransition):
        attempt_transition(offered, A.LOST, "skipping ahead")

    # then
    offered.refresh_from_db()
    assert (offered.status, offered.reason, offered.finished_at) == (A.OFFERED, "", None)


def test_an_offer_not_expired_yet_is_not_expired(offered):
    # when
    with pytest.raises(IllegalTransition):
        attempt_transition(offered, A.EXPIRED, "offer expired", offer_expired_at=timezone.now())

    # then
    assert JobAttempt.objects.get(pk=offered.pk).status == A.OFFERED


def test_asking_an_attempt_for_an_impossible_source_raises_without_the_database(offered):
    # given / when / then
    with pytest.raises(IllegalTransition) as excinfo:
        attempt_transition(offered, A.RUNNING, expected_from=[A.OFFERED])
    assert excinfo.value.message == "an attempt cannot go from offered to running"
