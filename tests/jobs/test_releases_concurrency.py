"""Races on PostgreSQL with real threads: two stewards deciding one release at once, and a
renter asking twice at once, each make one step (one audit entry), never two."""

from __future__ import annotations

from functools import partial

import pytest

from accounts.models import Membership, Organisation
from config.errors import Conflict
from config.transactions import durable_call
from jobs.models import ReleaseStatus
from jobs.services.releases import output_release_request, release_approve, release_refuse
from tests.conftest import _user
from tests.jobs.test_concurrency import race
from tests.jobs.test_releases import Pool

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROUNDS = 4


@pytest.fixture
def pool(make_host, hana, alice, mallory, ledger, wire) -> Pool:
    ledger.fund(alice, 50_000_000)
    made = Pool(make_host, hana, alice, mallory)
    return made


def test_two_stewards_deciding_at_once_make_one_decision(pool):
    tess = _user("tess")
    Membership.objects.create(user=tess, organisation=pool.org, is_steward=True)
    for _ in range(ROUNDS):
        # given a requested release
        job = pool.run()
        durable_call(output_release_request, user=pool.alice, job_id=job.pk, name="result.csv")
        output = pool.output(job)

        # when sam approves while tess refuses
        decide = partial(durable_call, organisation_id=pool.org.pk, release_id=output.pk)
        results = race(
            partial(decide, release_approve, user=pool.sam),
            partial(decide, release_refuse, user=tess, note="no"),
        )

        # then exactly one decided; the other was told it is no longer requested
        refusals = [r for r in results if isinstance(r, Conflict)]
        assert len(refusals) == 1, results
        assert refusals[0].code == "release_not_requested"
        output.refresh_from_db()
        assert output.release_status in (ReleaseStatus.APPROVED, ReleaseStatus.REFUSED)
        decisions = pool.org.audit_events.filter(
            job_id=job.pk, kind__in=["output.release_approved", "output.release_refused"]
        )
        assert decisions.count() == 1


def test_a_renter_asking_twice_at_once_makes_one_request(pool):
    Organisation.objects.filter(pk=pool.org.pk).update(pool_airlock=False)
    for _ in range(ROUNDS):
        job = pool.run()

        ask = partial(
            durable_call, output_release_request, user=pool.alice, job_id=job.pk, name="result.csv"
        )
        results = race(ask, ask, ask)

        assert not [r for r in results if isinstance(r, Exception)], results
        approvals = pool.org.audit_events.filter(job_id=job.pk, kind="output.release_approved")
        assert approvals.count() == 1
        assert pool.output(job).release_status == ReleaseStatus.APPROVED
