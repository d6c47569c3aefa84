"""The renter's job list: newest first, and ``?status=`` picks statuses (what ``communipute
jobs --status`` and ``Client.jobs(status=...)`` ask for)."""

from __future__ import annotations

from jobs.models import Job, JobStatus
from tests.jobs.helpers import submit


def test_the_list_filters_on_one_status_or_several(alice, make_host, hana, ledger, client_for):
    # given: three jobs of alice's, one queued, one running, one that succeeded
    ledger.fund(alice, 10_000_000)
    make_host(hana)
    queued, running, done = (submit(alice) for _ in range(3))
    Job.objects.filter(pk=queued.pk).update(status=JobStatus.QUEUED)
    Job.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING)
    Job.objects.filter(pk=done.pk).update(status=JobStatus.SUCCEEDED)
    renter = client_for(alice)

    def ids(query: str) -> list[int]:
        response = renter.get(f"/api/v1/jobs/{query}")
        assert response.status_code == 200, response.data
        return [job["id"] for job in response.data["results"]]

    # then
    assert ids("") == [done.pk, running.pk, queued.pk]
    assert ids("?status=running") == [running.pk]
    assert ids("?status=queued,succeeded") == [done.pk, queued.pk]
    assert ids("?status=failed") == []


def test_an_unknown_status_is_refused_by_name(alice, client_for):
    # when
    response = client_for(alice).get("/api/v1/jobs/?status=running,done")

    # then: 400 invalid, the field named with the statuses there are
    assert response.status_code == 400
    error = response.data["error"]
    assert error["code"] == "invalid"
    [message] = error["fields"]["status"]
    assert message.startswith("not a job status: done; one of queued, offered")
