"""Job groups on the server (docs/jobs.md, "Job groups"): tasks created only as they can start,
results, retries, host exclusion, cancel, the receipt and the socket. PostgreSQL."""

from __future__ import annotations

import pytest

from jobs.models import Job, JobGroup, JobGroupStatus, JobGroupTask, JobStatus, TaskStatus
from tests.jobs.group_steps import TASK_CAP, group_body, hosts_for_groups, open_jobs, task_run

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

FUNDS = 10_000_000


@pytest.fixture
def renter(alice, ledger, client_for):
    ledger.fund(alice, FUNDS)
    return client_for(alice)


@pytest.fixture
def hosts(make_host, hana):
    return hosts_for_groups(make_host, hana)


def test_smoke(renter, hosts, wire, committed, alice):
    with committed():
        response = renter.post("/api/v1/job-groups/", group_body(), format="json")
    assert response.status_code == 201, response.json()
    group = JobGroup.objects.get()
    assert len(open_jobs(group)) == 2
    for _ in range(5):
        jobs = open_jobs(group)
        with committed():
            task_run(jobs[0], cpu_ms=1000, wall_ms=2000)
    group.refresh_from_db()
    assert group.status == JobGroupStatus.FINISHED, group.status_reason
    print(renter.get(f"/api/v1/job-groups/{group.pk}/").json())
    print(renter.get(f"/api/v1/job-groups/{group.pk}/results/").json())
    print(renter.get(f"/api/v1/job-groups/{group.pk}/receipt/").json())
