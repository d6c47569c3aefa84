"""Cancel: at once while no host holds the job; through the agent while one does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hosts.models import Host
from jobs.models import AttemptStatus
from jobs.tasks import jobs_reap_pass
from tests.jobs.conftest import Wire
from tests.jobs.helpers import finished, lease_of, say, submit

FUNDS = 5_000_000


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, FUNDS)
    return ledger


@pytest.fixture
def host(make_host, hana):
    return make_host(hana)


def cancel(client, job):
    return client.post(f"/api/v1/jobs/{job.pk}/cancel/")


def test_an_offered_job_is_cancelled_at_once_and_the_host_told(
    alice, client_for, host, funded, wire: Wire, committed
):
    # given
    with committed():
        job = submit(alice)
    wire.clear()

    # when
    with committed():
        response = cancel(client_for(alice), job)

    # then
    assert response.status_code == 200
    assert (response.data["status"], response.data["status_reason"]) == (
        "cancelled",
        "cancelled by the owner",
    )
    assert job.attempts.get().status == AttemptStatus.CANCELLED
    assert wire.to(host.pk, "job.cancel") == [
        {"job_id": job.pk, "attempt": 1, "reason": "cancelled by the owner"}
    ]
    assert funded.wallets[alice.pk] == FUNDS

    # and a late accept is refused and killed
    with committed():
        replies = say(host, "job.accept", job_id=job.pk, attempt=1)
    assert [kind for kind, _ in replies] == ["error", "job.cancel"]
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_a_running_job_is_cancelled_through_the_agent(
    alice, client_for, host, funded, wire: Wire, committed
):
    # given
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
    wire.clear()
    client = client_for(alice)

    # when
    with committed():
        first = cancel(client, job)
        again = cancel(client, job)

    # then: still running until the agent confirms; the cancel went out once
    assert (first.data["status"], first.data["cancel_requested"]) == ("running", True)
    assert (again.status_code, again.data["status"]) == (200, "running")
    assert wire.to(host.pk, "job.cancel") == [
        {"job_id": job.pk, "attempt": 1, "reason": "cancelled by the owner"}
    ]
    assert "job.cancel_requested" in wire.event_types(job.pk)
    assert funded.wallets[alice.pk] == FUNDS - 1_000_000

    # and when the agent reports it stopped
    with committed():
        say(host, "job.finished", **finished(job, 1, status="cancelled", reason="cancelled"))

    # then
    job.refresh_from_db()
    assert (job.status, job.hold_released_at is not None) == ("cancelled", True)
    assert funded.wallets[alice.pk] == FUNDS


def test_a_cancel_pending_on_a_host_that_vanishes_ends_cancelled(
    alice, client_for, host, funded, committed
):
    # given
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        cancel(client_for(alice), job)
    lease = lease_of(job)

    # when
    with committed():
        jobs_reap_pass(now=lease + timedelta(seconds=1))

    # then
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job.status_reason == (
        "cancelled; attempt 1 was lost (the host stopped renewing its lease)"
    )
    assert Host.objects.get(pk=host.pk).jobs_lost == 1
    assert funded.wallets[alice.pk] == FUNDS


def test_a_finished_job_cannot_be_cancelled(alice, client_for, host, funded, committed):
    # given
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.finished", **finished(job, 1))
    job.refresh_from_db()
    before = (job.status, job.status_reason, job.cancel_requested_at)

    # when
    response = cancel(client_for(alice), job)

    # then
    assert (response.status_code, response.data["error"]["code"]) == (409, "job_finished")
    job.refresh_from_db()
    assert (job.status, job.status_reason, job.cancel_requested_at) == before
