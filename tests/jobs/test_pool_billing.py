"""The institution pays (docs/pools.md): a pool job's hold comes from the organisation's wallet,
its charges, fee and host earnings are any job's, its rest and the charges of lost work go back
to the organisation; the member's monthly cap; free member rates; the organisation's report.
Through the submit API with ``pool`` on real PostgreSQL, reconciled clean after."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Membership, MembershipRole, Organisation, User
from agent.metering import Rates
from config.transactions import durable_call
from jobs.billing import FREE_RATES, attempt_rates, usage_charges_post
from jobs.models import Job, JobGroup
from jobs.selectors import job_facts
from jobs.services.cancel import job_cancel
from jobs.tasks import jobs_reap_pass
from ledger.models import Account, AccountKind, LedgerTransaction
from ledger.providers import providers
from ledger.selectors import organisation_balances, wallet_balances
from ledger.services import organisation_credit
from tests.jobs.conftest import Wire
from tests.jobs.group_steps import TASK_CAP, group_body, open_jobs, task_cost, task_run
from tests.jobs.helpers import body, lease_of, say
from tests.jobs.metering_steps import (
    RATES,
    assert_reconciled,
    captured,
    expected_cost,
    fee_of,
    final,
    report,
    run,
)
from tests.ledger.helpers import balance, ledger_state

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

JOBS = "/api/v1/jobs/"
ORG_FUNDS = 5_000_000
CAP = 1_000_000


def _member(org: Organisation, user: User, **extra: Any) -> Membership:
    return Membership.objects.create(organisation=org, user=user, **extra)


def _user(name: str) -> User:
    return User.objects.create_user(
        username=name, email=f"{name}@example.com", password="correct horse 1"
    )


@pytest.fixture
def olga(db: None) -> User:
    """The organisation's admin."""
    return _user("olga")


@pytest.fixture
def bob(db: None) -> User:
    """A second member."""
    return _user("bob")


@pytest.fixture
def lab(olga: User, alice: User, staff: User) -> Organisation:
    """An organisation with a funded wallet; olga its admin, alice a member (no cap yet)."""
    org = Organisation.objects.create(name="lab")
    _member(org, olga, role=MembershipRole.ADMIN)
    _member(org, alice)
    durable_call(
        organisation_credit,
        organisation=org,
        amount_micros=ORG_FUNDS,
        key="test-org-funds",
        reason="the lab's budget",
        staff_user=staff,
    )
    return org


@pytest.fixture
def lab_box(make_host: Any, hana: User, lab: Organisation) -> Any:
    """A host of the lab's pool (private to it), at the metering tests' rates."""
    return make_host(
        hana, "lab-box", visibility="private", organisation=lab, cpus=64, slots=64, **RATES
    )


def pool_submit(client: Any, lab: Organisation, host: Any, **overrides: Any) -> Any:
    values = {
        "placement": None,
        "host": host.pk,
        "pool": lab.pk,
        "cpus": 2,
        "memory_mb": 512,
        "max_cost_micros": CAP,
        **overrides,
    }
    return client.post(JOBS, body(**values), format="json")


def org_wallet(lab: Organisation) -> int:
    return organisation_balances(lab.pk)["available_micros"]


def escrows() -> list[tuple[int | None, int, int | None, int]]:
    return list(
        Account.objects.filter(kind=AccountKind.ESCROW)
        .order_by("job_id")
        .values_list("job_id", "user_id", "organisation_id", "balance_micros")
    )


# --- the money flows -------------------------------------------------------------------------


def test_a_pool_job_is_paid_from_the_organisation_and_settles_back_to_it(
    client_for, alice, hana, lab, lab_box, committed, wire: Wire, monkeypatch
):
    # given: alice has no credits of her own
    monkeypatch.setattr(providers, "job_facts", job_facts)

    # when: she submits to the pool
    with committed():
        response = pool_submit(client_for(alice), lab, lab_box)

    # then: the organisation's wallet holds the cap, in an escrow whose user is alice
    assert response.status_code == 201, response.data
    job = Job.objects.get()
    assert (job.pool_id, job.host_id) == (lab.pk, lab_box.pk)
    assert escrows() == [(job.pk, alice.pk, lab.pk, CAP)]
    assert organisation_balances(lab.pk) == {
        "balance_micros": ORG_FUNDS,
        "held_micros": CAP,
        "available_micros": ORG_FUNDS - CAP,
    }
    assert wallet_balances(alice) == {"balance_micros": 0, "held_micros": 0, "available_micros": 0}

    # and when it runs, is charged, and finishes
    with committed():
        run(job, lab_box)
        report(lab_box, job, 1, "30.0", "20.0")
    with committed():
        usage_charges_post()
    with committed():
        say(lab_box, "job.finished", **final(job, 2, "40.0", "30.0"))

    # then: charged as any job, the rest back in the organisation's wallet
    total = expected_cost(40_000, 30_000)
    job.refresh_from_db()
    assert (job.status, job.cost_micros, job.hold_released_at is not None) == (
        "succeeded",
        total,
        True,
    )
    assert org_wallet(lab) == ORG_FUNDS - total
    assert organisation_balances(lab.pk)["held_micros"] == 0
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == total - fee_of(total)
    assert balance(AccountKind.REVENUE) == fee_of(total)
    assert balance(AccountKind.WALLET, user=alice) == 0
    release = LedgerTransaction.objects.get(key=f"job-release:{job.pk}")
    assert [
        (p.account.kind, p.account.organisation_id, p.amount_micros)
        for p in release.postings.select_related("account").order_by("amount_micros")
    ] == [
        (AccountKind.ESCROW, lab.pk, -(CAP - total)),
        (AccountKind.ORGANISATION_WALLET, lab.pk, CAP - total),
    ]
    assert_reconciled()

    # and the receipt says who spent and who paid
    receipt = client_for(alice).get(f"/api/v1/jobs/{job.pk}/receipt/").json()
    assert (receipt["spent_by"], receipt["paid_by"]) == (
        "alice",
        {"wallet": "organisation", "organisation": lab.pk, "organisation_name": "lab"},
    )
    assert (
        receipt["hold_micros"],
        receipt["refund_micros"],
        receipt["totals"]["charged_micros"],
    ) == (
        CAP,
        CAP - total,
        total,
    )
    # alice's own wallet history has nothing of it: the organisation paid
    assert client_for(alice).get("/api/v1/wallet/history/").json()["results"] == []


def test_the_charges_of_lost_work_go_back_to_the_organisation(
    client_for, alice, hana, lab, lab_box, committed, wire: Wire, monkeypatch
):
    # given: an attempt charged, then its host goes silent
    monkeypatch.setattr(providers, "job_facts", job_facts)
    with committed():
        pool_submit(client_for(alice), lab, lab_box)
        job = Job.objects.get()
        run(job, lab_box)
        report(lab_box, job, 1, "30.0", "20.0")
    with committed():
        usage_charges_post()
    charged = expected_cost(30_000, 20_000)
    assert captured(job) == charged

    # when: the attempt is lost and the job cancelled
    with committed():
        jobs_reap_pass(now=lease_of(job) + timedelta(seconds=1))
    with committed():
        durable_call(job_cancel, user=alice, job_id=job.pk)

    # then: the organisation's wallet is whole, the host earned nothing, no fee
    job.refresh_from_db()
    assert (job.status, job.cost_micros, job.hold_released_at is not None) == (
        "cancelled",
        0,
        True,
    )
    assert organisation_balances(lab.pk) == {
        "balance_micros": ORG_FUNDS,
        "held_micros": 0,
        "available_micros": ORG_FUNDS,
    }
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 0
    assert balance(AccountKind.REVENUE) == 0
    assert_reconciled()


def test_a_pool_job_the_organisation_cannot_cover_is_refused_and_changes_nothing(
    client_for, alice, lab, lab_box, committed, wire: Wire
):
    # given: alice's own wallet could pay, the organisation's can't
    from tests.jobs.real_ledger import RealLedger

    RealLedger().fund(alice, 10 * CAP)
    before = ledger_state()

    # when
    with committed():
        response = pool_submit(client_for(alice), lab, lab_box, max_cost_micros=ORG_FUNDS + 1)

    # then
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert f"organisation {lab.pk}" in error["message"]
    assert error["fields"]["wallet"] == [f"organisation {lab.pk}"]
    assert Job.objects.count() == 0
    assert escrows() == []
    assert ledger_state() == before
    assert wire.sent == []


def test_a_non_member_can_not_spend_the_organisations_wallet(
    client_for, mallory, lab, lab_box, committed
):
    # given
    before = ledger_state()

    # when
    with committed():
        response = pool_submit(client_for(mallory), lab, lab_box)

    # then
    assert (response.status_code, response.json()["error"]["code"]) == (400, "unknown_pool")
    assert Job.objects.count() == 0
    assert ledger_state() == before


# --- the member's monthly cap ----------------------------------------------------------------


def test_a_hold_past_the_members_monthly_cap_is_refused_naming_the_cap(
    client_for, alice, lab, lab_box, committed, wire: Wire
):
    # given: a cap of 1.5 holds; one job holds one already
    Membership.objects.filter(organisation=lab, user=alice).update(monthly_cap_micros=1_500_000)
    with committed():
        first = pool_submit(client_for(alice), lab, lab_box)
    assert first.status_code == 201
    before = ledger_state()

    # when
    with committed():
        second = pool_submit(client_for(alice), lab, lab_box)

    # then: 402 with the cap, what was spent and what was asked; nothing created
    assert second.status_code == 402
    error = second.json()["error"]
    assert error["code"] == "member_cap_exceeded"
    assert error["fields"] == {
        "cap_micros": ["1500000"],
        "spent_micros": [str(CAP)],
        "requested_micros": [str(CAP)],
    }
    assert "monthly cap of 1500000" in error["message"]
    assert Job.objects.count() == 1
    assert ledger_state() == before
    me = client_for(alice).get(f"/api/v1/organisations/{lab.pk}/wallet/me/").json()
    assert me == {
        "organisation": lab.pk,
        "month": timezone.now().strftime("%Y-%m"),
        "cap_micros": 1_500_000,
        "spent_micros": CAP,
        "cap_left_micros": 500_000,
    }


def test_a_settled_job_counts_its_charges_against_the_cap_not_its_hold(
    client_for, alice, lab, lab_box, committed, wire: Wire
):
    # given: a job that cost little and settled
    Membership.objects.filter(organisation=lab, user=alice).update(monthly_cap_micros=1_500_000)
    with committed():
        pool_submit(client_for(alice), lab, lab_box)
        job = Job.objects.get()
        run(job, lab_box)
        say(lab_box, "job.finished", **final(job, 1, "10.0", "10.0"))
    cost = expected_cost(10_000, 10_000)

    # when: the next job's hold fits the cap once the first's rest went back
    with committed():
        second = pool_submit(client_for(alice), lab, lab_box)

    # then
    assert second.status_code == 201, second.data
    me = client_for(alice).get(f"/api/v1/organisations/{lab.pk}/wallet/me/").json()
    assert me["spent_micros"] == cost + CAP
    assert org_wallet(lab) == ORG_FUNDS - cost - CAP


def test_holds_of_an_earlier_month_do_not_count_against_this_months_cap(
    client_for, alice, lab, lab_box, committed, wire: Wire
):
    # given: last month's job still holds its cap
    Membership.objects.filter(organisation=lab, user=alice).update(monthly_cap_micros=CAP)
    with committed():
        pool_submit(client_for(alice), lab, lab_box)
    last_month = timezone.now().replace(day=1) - timedelta(days=1)
    Account.objects.filter(kind=AccountKind.ESCROW).update(created_at=last_month)

    # when
    with committed():
        response = pool_submit(client_for(alice), lab, lab_box)

    # then
    assert response.status_code == 201, response.data


# --- free member rates -----------------------------------------------------------------------


def test_a_pool_that_runs_its_members_free_meters_usage_at_zero_rates(
    client_for, alice, hana, lab, lab_box, committed, wire: Wire, monkeypatch
):
    # given: the lab prices its own machines at zero for members; a cap far below a minute's
    # worth at the host's listed rates is accepted
    monkeypatch.setattr(providers, "job_facts", job_facts)
    Organisation.objects.filter(pk=lab.pk).update(pool_members_free=True)
    with committed():
        response = pool_submit(client_for(alice), lab, lab_box, max_cost_micros=10)
    assert response.status_code == 201, response.data
    job = Job.objects.get()
    attempt = job.attempts.get()
    assert (attempt.cpu_core_hour_micros, attempt.memory_gb_hour_micros) == (0, 0)
    [offer] = wire.to(lab_box.pk, "job.offer")
    assert offer["rates"] == {
        "cpu_core_hour_micros": 0,
        "memory_gb_hour_micros": 0,
        "gpu_hour_micros": 0,
    }

    # when: it runs and reports usage
    with committed():
        run(job, lab_box)
        report(lab_box, job, 1, "30.0", "20.0")
    with committed():
        usage_charges_post()
    with committed():
        say(lab_box, "job.finished", **final(job, 2, "40.0", "30.0"))

    # then: nothing charged, no fee, the host earned nothing, the hold is back
    job.refresh_from_db()
    assert (job.status, job.cost_micros, job.hold_released_at is not None) == (
        "succeeded",
        0,
        True,
    )
    assert LedgerTransaction.objects.filter(job_id=job.pk, kind="capture").count() == 0
    assert org_wallet(lab) == ORG_FUNDS
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 0
    assert balance(AccountKind.REVENUE) == 0
    assert_reconciled()
    # and the receipt shows the usage at rate 0
    receipt = client_for(alice).get(f"/api/v1/jobs/{job.pk}/receipt/").json()
    [line] = receipt["attempts"]
    cpu = next(u for u in line["usage"] if u["resource"] == "cpu")
    assert (cpu["quantity"], cpu["rate_micros_per_hour"]) == ("40", 0)
    assert (line["usage_cost_micros"], line["charged_micros"]) == (0, 0)


def test_a_free_pool_charges_its_members_on_hosts_outside_it(
    alice, hana, lab, lab_box, make_host, committed, wire: Wire, client_for
):
    # given: a free pool's job, and a public host that is not the pool's
    Organisation.objects.filter(pk=lab.pk).update(pool_members_free=True)
    public = make_host(hana, "public", **RATES)
    with committed():
        pool_submit(client_for(alice), lab, lab_box)
    job = Job.objects.get()
    listed = Rates(**RATES)

    # when / then: zero on the pool's host, the listed rates anywhere else
    assert attempt_rates(job, lab_box.pk, listed) == FREE_RATES
    assert attempt_rates(job, public.pk, listed) == listed
    # and for someone who is no longer a member
    Membership.objects.filter(organisation=lab, user=alice).delete()
    assert attempt_rates(job, lab_box.pk, listed) == listed


# --- job groups ------------------------------------------------------------------------------


def test_a_pool_groups_tasks_hold_from_the_organisation_within_the_members_cap(
    client_for, alice, lab, lab_box, committed, wire: Wire
):
    # given: a cap of three tasks' holds
    Membership.objects.filter(organisation=lab, user=alice).update(monthly_cap_micros=600_000)

    # when: a group of five tasks, three at once, 200,000 each
    with committed():
        response = client_for(alice).post(
            "/api/v1/job-groups/", group_body(pool=lab.pk, max_parallel=3), format="json"
        )

    # then: three tasks held from the organisation's wallet, in escrows of alice's
    assert response.status_code == 201, response.data
    group = JobGroup.objects.get()
    assert sorted(e[1:] for e in escrows()) == [(alice.pk, lab.pk, TASK_CAP)] * 3
    assert org_wallet(lab) == ORG_FUNDS - 3 * TASK_CAP

    # and when a task ends having cost something, the next task's hold would pass the cap
    first = open_jobs(group)[0]
    with committed():
        task_run(first, cpu_ms=2_000, wall_ms=2_000)
    cost = task_cost(2_000, 2_000)

    # then: it does not start; the rest of the first's hold is back with the organisation
    group.refresh_from_db()
    assert len(open_jobs(group)) == 2
    assert Job.objects.filter(group=group).count() == 3
    assert org_wallet(lab) == ORG_FUNDS - 2 * TASK_CAP - cost

    # and when a second task ends, there is room under the cap again: the next one starts
    with committed():
        task_run(open_jobs(group)[0], cpu_ms=2_000, wall_ms=2_000)
    assert Job.objects.filter(group=group).count() == 4
    assert len(open_jobs(group)) == 2
    assert org_wallet(lab) == ORG_FUNDS - 2 * TASK_CAP - 2 * cost
    me = client_for(alice).get(f"/api/v1/organisations/{lab.pk}/wallet/me/").json()
    assert me["spent_micros"] == 2 * TASK_CAP + 2 * cost
    receipt = client_for(alice).get(f"/api/v1/job-groups/{group.pk}/receipt/").json()
    assert (receipt["spent_by"], receipt["paid_by"]) == (
        "alice",
        {"wallet": "organisation", "organisation": lab.pk, "organisation_name": "lab"},
    )
    assert receipt["totals"]["charged_micros"] == 2 * cost


def test_a_pool_group_the_organisation_cannot_cover_is_refused_naming_its_wallet(
    client_for, alice, hana, make_host, committed, wire: Wire, staff
):
    # given: alice's own wallet is rich, the lab's can cover one task
    from tests.jobs.real_ledger import RealLedger

    RealLedger().fund(alice, 10 * ORG_FUNDS)
    poor = Organisation.objects.create(name="poor lab")
    _member(poor, alice)
    durable_call(
        organisation_credit,
        organisation=poor,
        amount_micros=TASK_CAP,
        key="poor-funds",
        reason="a little",
        staff_user=staff,
    )
    make_host(hana, "poor-box", visibility="private", organisation=poor, **RATES)
    before = ledger_state()

    # when
    with committed():
        response = client_for(alice).post(
            "/api/v1/job-groups/", group_body(pool=poor.pk, max_parallel=2), format="json"
        )

    # then
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert f"in the wallet of organisation {poor.pk}" in error["message"]
    assert error["fields"]["wallet"] == [f"organisation {poor.pk}"]
    assert (JobGroup.objects.count(), Job.objects.count()) == (0, 0)
    assert ledger_state() == before


def test_a_pool_groups_first_wave_past_the_cap_writes_nothing(
    client_for, alice, lab, lab_box, committed, wire: Wire
):
    # given
    Membership.objects.filter(organisation=lab, user=alice).update(monthly_cap_micros=600_000)
    before = ledger_state()

    # when: four tasks at once would hold 800,000
    with committed():
        response = client_for(alice).post(
            "/api/v1/job-groups/", group_body(pool=lab.pk, max_parallel=4), format="json"
        )

    # then
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "member_cap_exceeded"
    assert error["fields"] == {
        "cap_micros": ["600000"],
        "spent_micros": [str(3 * TASK_CAP)],
        "requested_micros": [str(TASK_CAP)],
    }
    assert (JobGroup.objects.count(), Job.objects.count()) == (0, 0)
    assert ledger_state() == before


# --- the organisation's report ---------------------------------------------------------------


def test_the_organisations_report_per_member_and_per_host_with_csv(
    client_for, alice, bob, olga, hana, lab, lab_box, committed, wire: Wire
):
    # given: alice's job charged at the host's rates; then the lab runs its members free and
    # bob's job is charged nothing; both on the lab's host
    _member(lab, bob)
    with committed():
        pool_submit(client_for(alice), lab, lab_box)
        job_a = Job.objects.get(owner=alice)
        run(job_a, lab_box)
        say(lab_box, "job.finished", **final(job_a, 1, "40.0", "30.0"))
    Organisation.objects.filter(pk=lab.pk).update(pool_members_free=True)
    with committed():
        pool_submit(client_for(bob), lab, lab_box, gpus=0)
        job_b = Job.objects.get(owner=bob)
        run(job_b, lab_box)
        say(lab_box, "job.finished", **final(job_b, 1, "12.5", "8.0"))
    cost = expected_cost(40_000, 30_000)
    admin = client_for(olga)
    today = timezone.now().date().isoformat()

    # when
    by_member = admin.get(f"/api/v1/organisations/{lab.pk}/reports/?group_by=member")
    by_host = admin.get(f"/api/v1/organisations/{lab.pk}/reports/?group_by=host&to={today}")
    as_csv = admin.get(f"/api/v1/organisations/{lab.pk}/reports/?group_by=member&format=csv")

    # then
    assert by_member.status_code == 200, by_member.content
    money = {
        "gross_charges_micros": cost,
        "platform_fees_micros": fee_of(cost),
        "host_earnings_micros": cost - fee_of(cost),
        "reversals_micros": 0,
    }
    free = dict.fromkeys(money, 0)
    rows = by_member.json()["rows"]
    assert rows == [
        {
            "member": alice.pk,
            "username": "alice",
            "jobs": 1,
            "cpu_seconds": "40",
            "gpu_seconds": "0",
            "wall_seconds": "30",
            **money,
        },
        {
            "member": bob.pk,
            "username": "bob",
            "jobs": 1,
            "cpu_seconds": "12.5",
            "gpu_seconds": "0",
            "wall_seconds": "8",
            **free,
        },
    ]
    assert by_member.json()["totals"] == {
        "jobs": 2,
        "cpu_seconds": "52.5",
        "gpu_seconds": "0",
        "wall_seconds": "38",
        **money,
    }
    [host_row] = by_host.json()["rows"]
    assert host_row == {
        "host": lab_box.pk,
        "host_name": "lab-box",
        "owner": hana.pk,
        "owner_username": "hana",
        "jobs": 2,
        "cpu_seconds": "52.5",
        "gpu_seconds": "0",
        "wall_seconds": "38",
        **money,
    }
    assert as_csv.status_code == 200
    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert as_csv["Content-Disposition"].startswith(
        f'attachment; filename="communipute-organisation-{lab.pk}-by-member-'
    )
    table = list(csv.reader(io.StringIO(as_csv.content.decode())))
    assert table == [
        [
            "member",
            "username",
            "jobs",
            "cpu_seconds",
            "gpu_seconds",
            "wall_seconds",
            "gross_charges_micros",
            "platform_fees_micros",
            "host_earnings_micros",
            "reversals_micros",
        ],
        [
            str(alice.pk),
            "alice",
            "1",
            "40",
            "0",
            "30",
            str(cost),
            str(fee_of(cost)),
            str(cost - fee_of(cost)),
            "0",
        ],
        [str(bob.pk), "bob", "1", "12.5", "0", "8", "0", "0", "0", "0"],
    ]


def test_the_report_refuses_a_bad_period_or_group_and_names_the_field(client_for, olga, lab):
    admin = client_for(olga)
    url = f"/api/v1/organisations/{lab.pk}/reports/"

    bad_group = admin.get(f"{url}?group_by=day")
    bad_period = admin.get(f"{url}?from=2026-03-02&to=2026-03-01")
    bad_date = admin.get(f"{url}?from=yesterday")

    assert (bad_group.status_code, set(bad_group.json()["error"]["fields"])) == (400, {"group_by"})
    assert (bad_period.status_code, bad_period.json()["error"]["code"]) == (400, "invalid_period")
    assert (bad_date.status_code, set(bad_date.json()["error"]["fields"])) == (400, {"from"})


def test_the_wallets_lines_show_who_spent(
    client_for, alice, olga, staff, lab, lab_box, committed, wire: Wire
):
    # given
    with committed():
        pool_submit(client_for(alice), lab, lab_box)
        job = Job.objects.get()
        run(job, lab_box)
        say(lab_box, "job.finished", **final(job, 1, "1.0", "1.0"))
    cost = expected_cost(1_000, 1_000)

    # when
    lines = client_for(olga).get(f"/api/v1/organisations/{lab.pk}/wallet/transactions/").json()

    # then: newest first: the release and the hold (alice's), the staff grant
    assert [
        (
            line["kind"],
            line["amount_micros"],
            line["job_id"],
            line["member_username"],
            line["by_username"],
        )
        for line in lines["results"]
    ] == [
        ("release", CAP - cost, job.pk, "alice", None),
        ("hold", -CAP, job.pk, "alice", None),
        ("grant", ORG_FUNDS, None, None, staff.username),
    ]
    assert lines["results"][1]["member"] == alice.pk
