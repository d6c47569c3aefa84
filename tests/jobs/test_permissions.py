"""Only the owner sees a job, its logs and outputs, or cancels it; others get 404."""

from __future__ import annotations

import pytest

from jobs.models import Job
from tests.jobs.helpers import say, submit


@pytest.fixture
def alices_job(alice, make_host, hana, ledger, committed):
    ledger.fund(alice, 5_000_000)
    host = make_host(hana)
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.log", job_id=job.pk, attempt=1, offset=0, data="secret\n")
    return job


@pytest.mark.parametrize(
    "path",
    ["{id}/", "{id}/logs/", "{id}/outputs/", "{id}/outputs/result.csv"],
)
def test_mallory_cannot_read_alices_job(alices_job, client_for, mallory, path):
    response = client_for(mallory).get("/api/v1/jobs/" + path.format(id=alices_job.pk))
    assert (response.status_code, response.data["error"]["code"]) == (404, "not_found")


def test_mallory_cannot_cancel_alices_job(alices_job, client_for, mallory):
    # when
    response = client_for(mallory).post(f"/api/v1/jobs/{alices_job.pk}/cancel/")

    # then
    assert (response.status_code, response.data["error"]["code"]) == (404, "not_found")
    alices_job.refresh_from_db()
    assert (alices_job.status, alices_job.cancel_requested_at) == ("accepted", None)


def test_the_job_list_shows_only_your_own(alices_job, client_for, alice, mallory):
    assert client_for(mallory).get("/api/v1/jobs/").data["results"] == []
    mine = client_for(alice).get("/api/v1/jobs/").data
    assert (mine["count"], mine["results"][0]["id"]) == (1, alices_job.pk)


def test_the_owner_reads_the_job(alices_job, client_for, alice):
    response = client_for(alice).get(f"/api/v1/jobs/{alices_job.pk}/")
    assert response.status_code == 200
    data = response.data
    assert (data["status"], data["attempt"], data["exit_code"], data["cost_micros"]) == (
        "accepted",
        1,
        None,
        0,
    )


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_callers_are_refused(api, db, method):
    response = getattr(api, method)("/api/v1/jobs/")
    assert response.status_code == 401
    assert Job.objects.count() == 0
