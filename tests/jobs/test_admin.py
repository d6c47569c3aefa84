"""The jobs admin: staff look, but can't make or delete a job behind the ledger's back."""

import pytest

from jobs.models import Job
from tests.jobs.helpers import submit


@pytest.fixture
def held_job(alice, make_host, hana, ledger):
    ledger.fund(alice, 5_000_000)
    make_host(hana)
    return submit(alice)


def test_staff_see_a_job(admin_client, held_job):
    assert admin_client.get("/admin/jobs/job/").status_code == 200
    assert admin_client.get(f"/admin/jobs/job/{held_job.pk}/change/").status_code == 200


def test_staff_cannot_delete_a_job_and_strand_its_hold(admin_client, held_job, ledger):
    # when
    page = admin_client.get(f"/admin/jobs/job/{held_job.pk}/delete/")
    posted = admin_client.post(f"/admin/jobs/job/{held_job.pk}/delete/", {"post": "yes"})
    bulk = admin_client.post(
        "/admin/jobs/job/",
        {"action": "delete_selected", "_selected_action": [held_job.pk], "post": "yes"},
    )

    # then
    assert (page.status_code, posted.status_code) == (403, 403)
    assert bulk.status_code == 200  # the changelist again: no such action
    assert Job.objects.filter(pk=held_job.pk).exists()
    assert ledger.escrow[held_job.pk] == 1_000_000


def test_staff_cannot_add_a_job_without_a_hold(admin_client):
    assert admin_client.get("/admin/jobs/job/add/").status_code == 403
