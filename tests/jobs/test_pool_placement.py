"""Pools: a pool job runs only on its pool's hosts and waits for them; a hidden pool's hosts
take only its jobs; pool_required; chosen hosts, quotes and groups follow the one rule
(docs/pools.md, "The model")."""

from __future__ import annotations

import pytest

from accounts.models import Membership, MembershipRole, Organisation
from config.errors import Conflict, ValidationFailed
from jobs.audit_models import PoolAuditEvent
from jobs.models import Job, JobAttempt, JobGroup, JobStatus
from jobs.services.dispatch import capacity_offer, job_offer_next
from jobs.tasks import jobs_reap_pass
from tests.jobs.conftest import Wire
from tests.jobs.group_steps import group_body
from tests.jobs.helpers import body, finished, say, submit
from tests.jobs.real_ledger import RealLedger

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

FUNDS = 50_000_000


@pytest.fixture
def lab(alice, hana):
    lab = Organisation.objects.create(name="lab")  # pool_hidden by default
    Membership.objects.create(organisation=lab, user=alice)
    Membership.objects.create(organisation=lab, user=hana, role=MembershipRole.ADMIN)
    RealLedger().fund_organisation(lab, FUNDS)  # the lab pays for its pool jobs
    return lab


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, FUNDS)
    return ledger


@pytest.fixture
def lab_box(make_host, hana, lab):
    # dearer than the public host, one slot: placement would pick the public one if it could
    return make_host(
        hana,
        "lab-box",
        slots=1,
        cpu_core_hour_micros=90_000,
        visibility="private",
        organisation=lab,
    )


@pytest.fixture
def public_box(make_host, hana):
    return make_host(hana, "public", cpu_core_hour_micros=10_000)


def _run(host, job):
    say(host, "job.accept", job_id=job.pk, attempt=1)
    say(host, "job.started", job_id=job.pk, attempt=1, phase="running")


def test_a_pool_job_waits_for_its_busy_pool_host_while_a_public_host_is_free_then_runs_there(
    alice, lab, lab_box, public_box, funded, wire: Wire, committed
):
    # given: the pool's only host runs a pool job
    with committed():
        first = submit(alice, pool_id=lab.pk)
        _run(lab_box, first)

    # when: a second pool job is submitted and the reaper passes, with the public host free
    with committed():
        second = submit(alice, pool_id=lab.pk)
    with committed():
        jobs_reap_pass()
        job_offer_next(second.pk)

    # then: it waits, saying for which hosts
    second.refresh_from_db()
    assert second.status == JobStatus.QUEUED
    assert second.waiting_reason == (
        f"waiting for a host of pool #{lab.pk} with 1 CPUs and 1024 MB of memory free: "
        "the one host that fits is busy"
    )
    assert JobAttempt.objects.filter(host=public_box).count() == 0
    assert wire.to(public_box.pk) == []

    # when: the pool host frees
    with committed():
        say(lab_box, "job.finished", **finished(first, 1))

    # then: the waiting job is offered there, and the public host never saw either
    second.refresh_from_db()
    assert (second.status, second.host_id) == (JobStatus.OFFERED, lab_box.pk)
    assert [o["job_id"] for o in wire.to(lab_box.pk, "job.offer")] == [first.pk, second.pk]
    assert wire.to(lab_box.pk, "job.offer")[1]["pool"]["id"] == lab.pk
    assert JobAttempt.objects.filter(host=public_box).count() == 0
    assert wire.to(public_box.pk) == []


def test_a_public_job_is_never_offered_to_a_hidden_pool_host_even_a_members(
    alice, lab, lab_box, make_host, hana, funded, wire: Wire, committed
):
    # given: the hidden pool's host is the only free one; the public host is busy
    busy = make_host(hana, "busy-public", slots=1, cpu_core_hour_micros=10_000)
    with committed():
        filler = submit(alice, pool_id=None, host=busy)
        _run(busy, filler)

    # when: alice (a member) submits a public job, and the pool host frees capacity
    with committed():
        job = submit(alice)
        capacity_offer(lab_box.pk)
        jobs_reap_pass()

    # then: it waits for the public host; the pool host was offered nothing
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert JobAttempt.objects.filter(host=lab_box).count() == 0
    assert wire.to(lab_box.pk) == []


def test_a_visible_pools_hosts_take_public_jobs_of_members_too(
    alice, lab, lab_box, funded, wire: Wire, committed
):
    # given: the pool is not hidden
    Organisation.objects.filter(pk=lab.pk).update(pool_hidden=False)

    # when
    with committed():
        job = submit(alice)

    # then
    assert (job.status, job.host_id) == (JobStatus.OFFERED, lab_box.pk)
    assert "pool" not in wire.to(lab_box.pk, "job.offer")[0]


def test_a_chosen_host_outside_the_pool_is_refused_and_nothing_is_created(
    alice, lab, lab_box, public_box, funded
):
    # when
    with pytest.raises(ValidationFailed) as refused:
        submit(alice, pool_id=lab.pk, host=public_box)

    # then
    assert refused.value.code == "unknown_host"
    assert refused.value.fields == {"host": [f"no host #{public_box.pk} in pool #{lab.pk}"]}
    assert Job.objects.count() == 0
    assert funded.wallets[alice.pk] == FUNDS


def test_a_pool_job_with_its_pools_chosen_host_runs_there(
    alice, lab, lab_box, public_box, funded, committed
):
    # when
    with committed():
        job = submit(alice, pool_id=lab.pk, host=lab_box)

    # then
    assert (job.status, job.host_id, job.pool_id) == (JobStatus.OFFERED, lab_box.pk, lab.pk)


def test_a_pool_without_an_online_host_refuses_the_submit(alice, lab, public_box, funded):
    # when: the pool has no host at all, a public one is free
    with pytest.raises(Conflict) as refused:
        submit(alice, pool_id=lab.pk)

    # then
    assert refused.value.code == "no_host_fits"
    assert str(refused.value) == f"no online host of pool #{lab.pk} fits this job now"
    assert Job.objects.count() == 0
    assert funded.wallets[alice.pk] == FUNDS


def test_pool_required_refuses_a_members_job_without_pool_and_names_every_such_pool(
    alice, lab, lab_box, public_box, funded, client_for
):
    # given: two organisations of alice's require their pool
    Organisation.objects.filter(pk=lab.pk).update(pool_required=True)
    clinic = Organisation.objects.create(name="clinic", pool_required=True)
    Membership.objects.create(organisation=clinic, user=alice)
    client = client_for(alice)

    # when
    job = client.post("/api/v1/jobs/", body(), format="json")
    group = client.post("/api/v1/job-groups/", group_body(count=2), format="json")
    pooled = client.post("/api/v1/jobs/", body(pool=lab.pk), format="json")

    # then
    names = f"#{lab.pk} lab, #{clinic.pk} clinic"
    for refused in (job, group):
        assert refused.status_code == 400, refused.json()
        assert refused.json()["error"]["code"] == "pool_required"
        assert refused.json()["error"]["fields"]["pool"] == [f"required: one of {names}"]
    assert pooled.status_code == 201, pooled.json()
    assert list(Job.objects.values_list("pk", "pool_id")) == [(pooled.json()["id"], lab.pk)]
    assert JobGroup.objects.count() == 0


def test_a_non_member_submitting_to_a_pool_gets_unknown_pool_and_nothing_moves(
    mallory, lab, lab_box, ledger, client_for
):
    # given
    ledger.fund(mallory, FUNDS)

    # when
    response = client_for(mallory).post("/api/v1/jobs/", body(pool=lab.pk), format="json")

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_pool"
    assert Job.objects.count() == 0
    assert ledger.wallets[mallory.pk] == FUNDS


def test_a_pool_groups_tasks_run_only_on_the_pools_hosts(
    alice, lab, lab_box, public_box, funded, client_for, committed, wire: Wire
):
    # when
    with committed():
        response = client_for(alice).post(
            "/api/v1/job-groups/",
            group_body(count=3, max_parallel=3, cpus=1, pool=lab.pk),
            format="json",
        )

    # then: one task offered to the pool's one slot, the others wait; none on the public host
    assert response.status_code == 201, response.json()
    group = JobGroup.objects.get()
    assert group.pool_id == lab.pk
    jobs = Job.objects.filter(group=group)
    assert {j.pool_id for j in jobs} == {lab.pk}
    assert sorted(j.status for j in jobs) == ["offered", "queued", "queued"]
    assert JobAttempt.objects.filter(host=public_box).count() == 0
    assert wire.to(public_box.pk) == []
    # every task's job is in the pool's trail, with its group and index
    submitted = PoolAuditEvent.objects.filter(organisation=lab, kind="job.submitted")
    assert sorted((e.job_id, e.detail["task_index"], e.actor_id) for e in submitted) == sorted(
        (j.pk, j.task_index, alice.pk) for j in jobs
    )


def test_a_quote_with_pool_lists_only_the_pools_hosts(
    alice, mallory, lab, lab_box, public_box, client_for
):
    # given
    spec = {"cpus": 1, "memory_mb": 1024, "timeout_seconds": 600}

    # when
    pooled = client_for(alice).post("/api/v1/quotes/", {**spec, "pool": lab.pk}, format="json")
    public = client_for(alice).post("/api/v1/quotes/", spec, format="json")
    outsider = client_for(mallory).post("/api/v1/quotes/", {**spec, "pool": lab.pk}, format="json")
    chosen = client_for(alice).post(
        "/api/v1/quotes/", {**spec, "pool": lab.pk, "host": public_box.pk}, format="json"
    )

    # then
    assert [h["host"] for h in pooled.json()["hosts"]] == [lab_box.pk]
    assert [h["host"] for h in public.json()["hosts"]] == [public_box.pk]
    assert (outsider.status_code, outsider.json()["error"]["code"]) == (400, "unknown_pool")
    assert (chosen.status_code, chosen.json()["error"]["fields"]) == (
        400,
        {"host": [f"no host #{public_box.pk} in pool #{lab.pk}"]},
    )
