"""GET /api/v1/jobs/{id}/usage/: the stored usage samples and the timeline, for a finished job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import Job, JobAttempt, UsageReport
from jobs.usage_history import USAGE_HISTORY_MAX_POINTS
from tests.jobs.helpers import say
from tests.jobs.metering_steps import FUNDS, RATES, expected_cost, final, metered_job, report, run


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, FUNDS)
    return ledger


@pytest.fixture
def host(make_host, hana):
    return make_host(hana, "metered", **RATES)


def _finished_job(alice, host, committed):
    with committed():
        job = metered_job(alice, host)
        run(job, host)
        report(host, job, 1, "1.0", "2.0")
        report(host, job, 2, "3.0", "4.0", memory_current_mb=120)
        say(host, "job.finished", **final(job, 3, "5.0", "6.0"))
    # run() backdates the start so that the reports are possible; put the steps in order
    t0 = timezone.now() - timedelta(minutes=10)
    Job.objects.filter(pk=job.pk).update(queued_at=t0, finished_at=t0 + timedelta(seconds=9))
    JobAttempt.objects.filter(job=job).update(
        offered_at=t0 + timedelta(seconds=1),
        accepted_at=t0 + timedelta(seconds=2),
        started_at=t0 + timedelta(seconds=3),
        finished_at=t0 + timedelta(seconds=9),
    )
    return job


def test_a_finished_jobs_samples_and_timeline_are_served(
    client_for, alice, host, funded, committed
):
    # given
    job = _finished_job(alice, host, committed)

    # when
    response = client_for(alice).get(f"/api/v1/jobs/{job.pk}/usage/")

    # then
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["job_id"] == job.pk
    [attempt] = body["attempts"]
    assert (attempt["attempt"], attempt["host_id"], attempt["host_name"]) == (1, host.pk, "metered")
    assert (attempt["status"], attempt["report_count"]) == ("succeeded", 3)
    samples = [
        {k: s[k] for k in ("cpu_seconds", "wall_seconds", "memory_current_mb", "cost_micros")}
        for s in attempt["samples"]
    ]
    assert samples == [
        {
            "cpu_seconds": 1.0,
            "wall_seconds": 2.0,
            "memory_current_mb": 90,
            "cost_micros": expected_cost(1_000, 2_000),
        },
        {
            "cpu_seconds": 3.0,
            "wall_seconds": 4.0,
            "memory_current_mb": 120,
            "cost_micros": expected_cost(3_000, 4_000),
        },
        {
            "cpu_seconds": 5.0,
            "wall_seconds": 6.0,
            "memory_current_mb": 0,
            "cost_micros": expected_cost(5_000, 6_000),
        },
    ]
    statuses = [(e["status"], e["attempt"]) for e in body["timeline"]]
    assert statuses == [
        ("queued", None),
        ("offered", 1),
        ("accepted", 1),
        ("running", 1),
        ("succeeded", 1),
    ]
    assert body["timeline"][-1]["reason"] == "exit code 0"


def test_a_lost_attempt_shows_in_the_timeline(client_for, alice, host, funded, committed):
    # given
    with committed():
        job = metered_job(alice, host)
        run(job, host)
    JobAttempt.objects.filter(job=job).update(
        status="lost", reason="the host went away", finished_at=timezone.now()
    )

    # when
    body = client_for(alice).get(f"/api/v1/jobs/{job.pk}/usage/").json()

    # then
    assert [(e["status"], e["reason"]) for e in body["timeline"]][-1] == (
        "lost",
        "the host went away",
    )


def test_a_long_attempt_is_downsampled_with_its_first_and_last(
    client_for, alice, host, funded, committed
):
    # given 1,235 stored reports
    with committed():
        job = metered_job(alice, host)
        attempt = run(job, host)
    start = timezone.now() - timedelta(hours=1)
    UsageReport.objects.bulk_create(
        UsageReport(
            attempt=attempt,
            seq=seq,
            cpu_ms=seq * 1000,
            wall_ms=seq * 1000,
            memory_current_mb=seq % 50,
            received_at=start + timedelta(seconds=seq),
        )
        for seq in range(1, 1236)
    )

    # when
    with CaptureQueriesContext(connection) as queries:
        body = client_for(alice).get(f"/api/v1/jobs/{job.pk}/usage/").json()

    # then
    [served] = body["attempts"]
    walls = [s["wall_seconds"] for s in served["samples"]]
    assert served["report_count"] == 1235
    assert len(walls) <= USAGE_HISTORY_MAX_POINTS
    assert len(walls) == 1 + len(range(1235, 0, -3))
    assert (walls[0], walls[-1]) == (1.0, 1235.0)
    assert walls == sorted(walls)
    assert len(queries) <= 10


def test_the_host_owner_sees_their_attempts_and_others_see_nothing(
    client_for, alice, hana, mallory, host, funded, committed
):
    # given
    job = _finished_job(alice, host, committed)

    # when
    as_host = client_for(hana).get(f"/api/v1/jobs/{job.pk}/usage/")
    as_stranger = client_for(mallory).get(f"/api/v1/jobs/{job.pk}/usage/")
    unknown = client_for(alice).get("/api/v1/jobs/999999/usage/")

    # then
    assert as_host.status_code == 200
    assert [a["attempt"] for a in as_host.json()["attempts"]] == [1]
    assert [e["status"] for e in as_host.json()["timeline"]] == [
        "offered",
        "accepted",
        "running",
        "succeeded",
    ]
    assert (as_stranger.status_code, as_stranger.json()["error"]["code"]) == (404, "not_found")
    assert unknown.status_code == 404
