"""A member's monthly cap under concurrency, on PostgreSQL with real threads: 20 submits at once
by one member never spend past the cap, and another member's submits are not held up by it."""

from __future__ import annotations

import threading
from collections import Counter
from functools import partial
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import Membership, MembershipRole, Organisation, User
from config import transactions
from config.transactions import durable_call
from jobs.models import Job, JobGroup
from ledger.models import Account, AccountKind
from ledger.selectors import member_month_spent, organisation_balances
from ledger.services import organisation_credit
from tests.jobs.group_steps import group_body, open_jobs
from tests.jobs.helpers import body
from tests.jobs.metering_steps import RATES
from tests.jobs.test_concurrency import race
from tests.jobs.test_group_concurrency import finishing, running
from tests.ledger.helpers import assert_invariants

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

HOLD = 200_000
CAP = 5 * HOLD
ORG_FUNDS = 100 * HOLD
ROUNDS = 4


def _user(name: str, **extra: Any) -> User:
    return User.objects.create_user(
        username=name, email=f"{name}@example.com", password="correct horse 1", **extra
    )


def _submit(user: User, lab: Organisation, host_id: int) -> Any:
    client = APIClient()
    client.force_authenticate(user)
    try:
        return client.post(
            "/api/v1/jobs/",
            body(placement=None, host=host_id, pool=lab.pk, max_cost_micros=HOLD),
            format="json",
        )
    finally:
        connection.close()


def _race(calls: list[tuple[User, Organisation, int]]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=20)
            results[index] = _submit(*calls[index])
        except Exception as exc:  # a failure shows in the outcome counts
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _outcome(response: Any) -> str:
    if isinstance(response, Exception):
        return repr(response)
    if response.status_code == 201:
        return "created"
    return str(response.json()["error"]["code"])


@pytest.fixture
def pool(wire: Any, make_host: Any) -> tuple[Organisation, User, User, int]:
    staff = _user("sam", is_staff=True)
    alice, bob, hana = _user("alice"), _user("bob"), _user("hana")
    lab = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=lab, user=alice, monthly_cap_micros=CAP)
    Membership.objects.create(organisation=lab, user=bob, monthly_cap_micros=CAP)
    Membership.objects.create(organisation=lab, user=staff, role=MembershipRole.ADMIN)
    durable_call(
        organisation_credit,
        organisation=lab,
        amount_micros=ORG_FUNDS,
        key="test-org-funds",
        reason="budget",
        staff_user=staff,
    )
    host = make_host(
        hana, "lab-box", visibility="private", organisation=lab, cpus=64, slots=64, **RATES
    )
    return lab, alice, bob, host.pk


def test_twenty_concurrent_submits_by_one_member_never_pass_the_cap(pool):
    # given: a cap of five holds
    lab, alice, _bob, host_id = pool

    # when: twenty submits at once
    results = _race([(alice, lab, host_id)] * 20)

    # then: exactly five went through, the others were refused by the cap, nothing else
    assert Counter(_outcome(r) for r in results) == {"created": 5, "member_cap_exceeded": 15}
    assert Job.objects.filter(owner=alice).count() == 5
    assert Account.objects.filter(kind=AccountKind.ESCROW, user=alice).count() == 5
    assert member_month_spent(organisation_id=lab.pk, user_id=alice.pk) == CAP
    assert organisation_balances(lab.pk) == {
        "balance_micros": ORG_FUNDS,
        "held_micros": CAP,
        "available_micros": ORG_FUNDS - CAP,
    }
    assert_invariants()


def test_a_second_members_submits_are_not_blocked_by_the_first_ones_cap(pool):
    # given: alice has spent her cap already
    lab, alice, bob, host_id = pool
    assert Counter(_outcome(r) for r in _race([(alice, lab, host_id)] * 5)) == {"created": 5}

    # when: alice (over her cap) and bob submit at once, ten each
    results = _race([(alice, lab, host_id), (bob, lab, host_id)] * 10)

    # then: every one of alice's is refused; bob gets exactly his own cap's worth
    alice_outcomes = Counter(_outcome(r) for r in results[0::2])
    bob_outcomes = Counter(_outcome(r) for r in results[1::2])
    assert alice_outcomes == {"member_cap_exceeded": 10}
    assert bob_outcomes == {"created": 5, "member_cap_exceeded": 5}
    assert member_month_spent(organisation_id=lab.pk, user_id=alice.pk) == CAP
    assert member_month_spent(organisation_id=lab.pk, user_id=bob.pk) == CAP
    assert organisation_balances(lab.pk)["available_micros"] == ORG_FUNDS - 2 * CAP
    assert_invariants()


def test_a_pool_groups_settlements_racing_its_owners_submits_never_deadlock(pool, monkeypatch):
    """A pool task's settlement releases into the organisation's wallet and then holds the
    next task, which takes the member's row; a submit of the same member takes that row, then
    the wallet. The settlement takes the member's row before the wallet (docs/ledger.md, "Lock
    order"), so the two queue instead of deadlocking: no transaction is a deadlock victim."""
    # given: no cap of her own, a group of many tasks, four at a time
    lab, alice, _bob, host_id = pool
    Membership.objects.filter(organisation=lab, user=alice).update(monthly_cap_micros=None)
    victims: list[BaseException] = []
    retryable = transactions.is_retryable

    def recording(error: BaseException) -> bool:
        if retryable(error):
            victims.append(error)
            return True
        return False

    monkeypatch.setattr(transactions, "is_retryable", recording)
    client = APIClient()
    client.force_authenticate(alice)
    created = client.post(
        "/api/v1/job-groups/",
        group_body(pool=lab.pk, count=40, max_parallel=4, cpus=1, memory_mb=512),
        format="json",
    )
    assert created.status_code == 201, created.json()
    group = JobGroup.objects.get(pk=created.json()["id"])

    for _ in range(ROUNDS):
        # when: the four running tasks finish while alice submits four jobs
        tasks = [running(job) for job in open_jobs(group)]
        assert len(tasks) == 4
        results = race(
            *(finishing(job, "1", "2") for job in tasks),
            *(partial(_submit, alice, lab, host_id) for _ in range(4)),
        )

        # then: every one went through, none was a deadlock victim
        assert [reply[0][0] for reply in results[:4]] == ["ack"] * 4, results
        assert [_outcome(r) for r in results[4:]] == ["created"] * 4
        assert victims == []
    assert_invariants()
