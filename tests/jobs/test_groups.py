"""A job group's life on the server (docs/jobs.md, "Job groups"): its tasks created only as
they can start, never past max_parallel nor the group cap (a Hypothesis property over random
task costs), results and their order, error retries, host faults and losses (run elsewhere,
the host excluded), cancel, the receipt, the socket. Agents are played through the handlers
the agent socket calls. PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from accounts.models import User
from blobs.models import Blob
from hosts.models import Host
from jobs.billing import usage_charges_post
from jobs.group_selectors import group_receipt
from jobs.models import (
    Job,
    JobAttempt,
    JobGroup,
    JobGroupHostExclusion,
    JobGroupStatus,
    JobGroupTask,
    JobStatus,
    TaskStatus,
)
from jobs.routing import websocket_urlpatterns
from jobs.selectors import blobs_in_use, job_facts
from jobs.services.dispatch import attempt_lose
from ledger.models import AccountKind
from ledger.selectors import wallet_balances
from ledger.services import ledger_reconcile
from tests.jobs.group_steps import (
    TASK_CAP,
    group_body,
    host_of,
    hosts_for_groups,
    open_jobs,
    task_cost,
    task_run,
)
from tests.jobs.helpers import say, usage
from tests.jobs.metering_steps import charged
from tests.jobs.real_ledger import RealLedger
from tests.jobs.test_socket import session_cookie
from tests.ledger.helpers import balance

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

FUNDS = 50_000_000
_examples = itertools.count(1)
URL = "/api/v1/job-groups/"


@pytest.fixture
def renter(alice, ledger, client_for):
    ledger.fund(alice, FUNDS)
    return client_for(alice)


@pytest.fixture
def hosts(make_host, hana):
    return hosts_for_groups(make_host, hana)


def create(client: Any, committed: Any, **overrides: Any) -> JobGroup:
    with committed():
        response = client.post(URL, group_body(**overrides), format="json")
    assert response.status_code == 201, response.json()
    return JobGroup.objects.get(pk=response.json()["id"])


def held_now(group: JobGroup) -> int:
    """What the group's open task jobs hold in their escrows now (from the ledger)."""
    return sum(
        balance(AccountKind.ESCROW, job_id=job.pk)
        for job in Job.objects.filter(group=group, hold_released_at__isnull=True)
    )


def charged_all(group: JobGroup) -> int:
    """What the group's jobs paid out of their escrows: captures net of reversals."""
    return sum(charged(job) for job in Job.objects.filter(group=group))


def lease_run_out(job: Job) -> bool:
    """The job's current attempt's lease ran out: the reaper loses it."""
    attempt = JobAttempt.objects.get(job=job, number=job.attempt)
    JobAttempt.objects.filter(pk=attempt.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return attempt_lose(attempt.pk, "the host stopped renewing its lease")


def statuses(group: JobGroup) -> list[str]:
    return list(
        JobGroupTask.objects.filter(group=group).order_by("index").values_list("status", flat=True)
    )


# --- starting tasks as room frees --------------------------------------------------------------


def test_a_task_starts_only_when_one_settles_and_never_more_than_max_parallel(
    renter, hosts, alice, wire, committed
):
    # given
    group = create(renter, committed, count=5, max_parallel=2)
    most_at_once = 0

    # when: tasks finish one at a time, cheapest first
    while open_jobs(group):
        jobs = open_jobs(group)
        most_at_once = max(most_at_once, len(jobs))
        assert held_now(group) == len(jobs) * TASK_CAP
        with committed():
            task_run(jobs[0], cpu_ms=1_000, wall_ms=2_000)

    # then: each index ran once, in order, two at a time at most, each charged once
    group.refresh_from_db()
    assert most_at_once == 2
    assert group.status == JobGroupStatus.FINISHED
    assert group.status_reason == "5 tasks: 5 succeeded"
    jobs = list(Job.objects.filter(group=group).order_by("pk"))
    assert [j.task_index for j in jobs] == [0, 1, 2, 3, 4]
    assert {j.cost_micros for j in jobs} == {task_cost(1_000, 2_000)}
    assert group.settled_cost_micros == charged_all(group) == 5 * task_cost(1_000, 2_000)
    assert wallet_balances(alice)["available_micros"] == FUNDS - charged_all(group)
    assert ledger_reconcile(job_facts=job_facts).problems == []


def test_tasks_that_cost_their_whole_cap_stop_at_the_group_cap_and_the_rest_never_start(
    renter, hosts, alice, wire, committed
):
    # given: a group cap of two and a half tasks' caps
    group = create(renter, committed, count=5, max_parallel=5, max_cost_micros=TASK_CAP * 5 // 2)

    # when: each task that starts uses its whole cap (an hour at 2 cores is far past it)
    while open_jobs(group):
        with committed():
            task_run(open_jobs(group)[0], cpu_ms=3_600_000, wall_ms=1_800_000)

    # then: two ran (a third's cap would have passed the group's), three were never created
    group.refresh_from_db()
    assert statuses(group) == ["succeeded", "succeeded", "skipped", "skipped", "skipped"]
    assert Job.objects.filter(group=group).count() == 2
    assert charged_all(group) == 2 * TASK_CAP <= group.max_cost_micros
    assert group.status == JobGroupStatus.FINISHED
    assert group.status_reason == "5 tasks: 3 skipped, 2 succeeded"
    skipped = JobGroupTask.objects.filter(group=group, status=TaskStatus.SKIPPED).first()
    assert skipped is not None
    assert skipped.reason == "not started: one more task's cap would pass the group's cap"
    # and: nothing is held for the group now; the wallet paid exactly the two tasks
    assert wallet_balances(alice) == {
        "available_micros": FUNDS - 2 * TASK_CAP,
        "held_micros": 0,
        "balance_micros": FUNDS - 2 * TASK_CAP,
    }


def test_a_cheap_task_makes_room_for_the_next_under_a_tight_cap(
    renter, hosts, alice, wire, committed
):
    # given: room for two caps at once, four tasks
    group = create(renter, committed, count=4, max_parallel=4, max_cost_micros=2 * TASK_CAP)
    assert len(open_jobs(group)) == 2

    # when: the first finishes cheaply
    with committed():
        task_run(open_jobs(group)[0], cpu_ms=1_000, wall_ms=2_000)

    # then: not a third at once: settled (2,000) + two open caps would pass the cap
    assert len(open_jobs(group)) == 1
    # when the second finishes cheaply too, the next one starts
    with committed():
        task_run(open_jobs(group)[0], cpu_ms=1_000, wall_ms=2_000)
    assert [j.task_index for j in open_jobs(group)] == [2]


@st.composite
def group_runs(draw: Any) -> dict[str, Any]:
    count = draw(st.integers(1, 6))
    return {
        "count": count,
        "max_parallel": draw(st.integers(1, 3)),
        "cap": draw(st.integers(TASK_CAP, 4 * TASK_CAP)),
        # each task's counters: CPU ms, wall ms (at most 2 cores busy); some pass the task cap
        "usage": draw(
            st.lists(
                st.integers(0, 250_000).flatmap(
                    lambda wall: st.tuples(st.integers(0, 2 * wall), st.just(wall))
                ),
                min_size=count,
                max_size=count,
            )
        ),
        "order": draw(st.randoms(use_true_random=False)),
        "fails": draw(st.lists(st.booleans(), min_size=count, max_size=count)),
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(run=group_runs())
def test_the_group_cap_is_never_passed_whatever_the_tasks_cost(run, hosts, wire, committed):
    # given: a renter of this example and its group (the examples share the database and
    # the hosts, which have been seen now: the examples run for longer than a host stays fresh)
    Host.objects.filter(pk__in=[h.pk for h in hosts]).update(last_seen_at=timezone.now())
    name = f"renter-{next(_examples)}"
    renter = User.objects.create_user(username=name, email=f"{name}@example.com")
    RealLedger().fund(renter, FUNDS)
    client = APIClient()
    client.force_authenticate(renter)
    group = create(
        client,
        committed,
        count=run["count"],
        max_parallel=run["max_parallel"],
        max_cost_micros=run["cap"],
    )

    # when: the open tasks end in a random order with random costs (some fail)
    while open_jobs(group):
        jobs = open_jobs(group)
        group.refresh_from_db()
        # then, at every step: holds + what settled tasks paid within the cap
        assert len(jobs) <= run["max_parallel"]
        assert group.settled_cost_micros + held_now(group) <= run["cap"]
        assert charged_all(group) + held_now(group) <= run["cap"]
        job = run["order"].choice(jobs)
        cpu, wall = run["usage"][job.task_index]
        failed = run["fails"][job.task_index]
        with committed():
            task_run(
                job,
                cpu_ms=cpu,
                wall_ms=wall,
                status="failed" if failed else "succeeded",
                exit_code=1 if failed else 0,
            )

    # then: every task has its result, what was paid is within the cap, and a task was
    # skipped only because one more cap would have passed it
    group.refresh_from_db()
    assert group.status == JobGroupStatus.FINISHED
    assert set(statuses(group)) <= {"succeeded", "failed", "skipped"}
    paid = charged_all(group)
    assert paid == group.settled_cost_micros <= run["cap"]
    assert held_now(group) == 0
    if "skipped" in statuses(group):
        assert paid + TASK_CAP > run["cap"]
    assert wallet_balances(renter)["available_micros"] == FUNDS - paid
    assert ledger_reconcile(job_facts=job_facts).problems == []


# --- results -----------------------------------------------------------------------------------


def test_a_failing_script_is_a_result_not_a_group_failure(renter, hosts, alice, wire, committed):
    # given
    group = create(renter, committed, count=3, max_parallel=3)
    first, second, third = open_jobs(group)

    # when: the middle one's script exits 3
    with committed():
        task_run(second, cpu_ms=500, wall_ms=1_000, status="failed", exit_code=3)
        task_run(first, cpu_ms=500, wall_ms=1_000)
        task_run(third, cpu_ms=500, wall_ms=1_000)

    # then
    group.refresh_from_db()
    assert group.status == JobGroupStatus.FINISHED
    assert group.status_reason == "3 tasks: 1 failed, 2 succeeded"
    results = renter.get(f"{URL}{group.pk}/results/").json()
    assert [(r["index"], r["status"], r["exit_code"]) for r in results["results"]] == [
        (0, "succeeded", 0),
        (1, "failed", 3),
        (2, "succeeded", 0),
    ]
    assert results["results"][1]["reason"] == "exit code 3"
    assert results["is_complete"] is True


def test_results_come_in_index_order_and_never_skip_a_running_task(
    renter, hosts, alice, wire, committed
):
    # given: three tasks; the last two finish, the first still runs
    group = create(renter, committed, count=3, max_parallel=3)
    first, second, third = open_jobs(group)
    with committed():
        task_run(third, cpu_ms=500, wall_ms=1_000)
        task_run(second, cpu_ms=500, wall_ms=1_000)

    # when
    waiting = renter.get(f"{URL}{group.pk}/results/").json()
    with committed():
        task_run(first, cpu_ms=500, wall_ms=1_000)
    page = renter.get(f"{URL}{group.pk}/results/?index=0&limit=2").json()
    rest = renter.get(f"{URL}{group.pk}/results/?index={page['next_index']}").json()

    # then
    assert (waiting["results"], waiting["next_index"], waiting["is_complete"]) == ([], 0, False)
    assert ([r["index"] for r in page["results"]], page["next_index"]) == ([0, 1], 2)
    assert page["is_complete"] is False
    assert ([r["index"] for r in rest["results"]], rest["is_complete"]) == ([2], True)
    assert rest["results"][0]["job_id"] == third.pk
    assert rest["results"][0]["cost_micros"] == task_cost(500, 1_000)


def test_an_error_retry_runs_the_index_again_as_a_new_job(renter, hosts, alice, wire, committed):
    # given: one error retry
    group = create(renter, committed, count=2, max_parallel=2, error_retries=1)
    first, second = open_jobs(group)

    # when: index 0 fails twice, index 1 once then succeeds
    with committed():
        task_run(first, cpu_ms=500, wall_ms=1_000, status="failed", exit_code=1)
        task_run(second, cpu_ms=500, wall_ms=1_000, status="failed", exit_code=1)
    retries = open_jobs(group)
    with committed():
        task_run(retries[0], cpu_ms=500, wall_ms=1_000, status="failed", exit_code=2)
        task_run(retries[1], cpu_ms=500, wall_ms=1_000)

    # then: two jobs per index; the last one's result is the task's; all four paid
    assert [j.task_index for j in retries] == [0, 1]
    assert {j.pk for j in retries}.isdisjoint({first.pk, second.pk})
    tasks = list(JobGroupTask.objects.filter(group=group).order_by("index"))
    assert [(t.status, t.exit_code, t.error_tries, t.job_id) for t in tasks] == [
        (TaskStatus.FAILED, 2, 1, retries[0].pk),
        (TaskStatus.SUCCEEDED, 0, 1, retries[1].pk),
    ]
    group.refresh_from_db()
    assert group.settled_cost_micros == charged_all(group) == 4 * task_cost(500, 1_000)
    receipt = group_receipt(alice, group.pk)
    assert [line["job_id"] for line in receipt["tasks"]] == [
        first.pk,
        retries[0].pk,
        second.pk,
        retries[1].pk,
    ]


# --- host faults and losses ----------------------------------------------------------------------


def test_a_task_a_host_lost_runs_elsewhere_charged_once_and_the_host_gets_no_more(
    renter, hosts, alice, wire, committed
):
    # given: a task running and charged on its host, which then falls silent
    group = create(renter, committed, count=4, max_parallel=2)
    lost = open_jobs(group)[0]
    loser = host_of(lost)
    [other] = [host for host in hosts if host.pk != loser.pk]
    say(loser, "job.accept", job_id=lost.pk, attempt=1)
    say(loser, "job.started", job_id=lost.pk, attempt=1, phase="running")
    JobAttempt.objects.filter(job=lost, number=1).update(
        started_at=timezone.now() - timedelta(hours=1)
    )
    say(loser, "job.usage", **usage(lost, 1, seq=1, cpu_seconds=5.0, wall_seconds=10.0))
    usage_charges_post()
    assert charged(lost) == task_cost(5_000, 10_000)
    created_before = set(Job.objects.filter(group=group).values_list("pk", flat=True))

    # when: its lease runs out
    with committed():
        assert lease_run_out(lost)

    # then: the lost attempt's charges are given back, and the task runs on the other host
    lost.refresh_from_db()
    assert charged(lost) == 0
    assert (lost.status, lost.attempt, lost.host_id) == (JobStatus.OFFERED, 2, other.pk)
    assert JobGroupHostExclusion.objects.filter(group=group, host=loser).exists()
    # and: every task created after the loss goes to the other host
    while open_jobs(group):
        job = open_jobs(group)[0]
        if job.pk not in created_before:
            assert job.host_id == other.pk, (job.task_index, job.host_id)
        with committed():
            task_run(job, cpu_ms=1_000, wall_ms=2_000)
    assert statuses(group) == ["succeeded"] * 4
    assert charged(lost) == task_cost(1_000, 2_000)  # its second attempt only
    assert charged_all(group) == 4 * task_cost(1_000, 2_000)
    assert ledger_reconcile(job_facts=job_facts).problems == []


def test_host_faults_are_retried_elsewhere_up_to_host_fault_retries(
    renter, make_host, hana, alice, wire, committed
):
    # given: three hosts, one retry for host faults
    hosts_for_groups(make_host, hana, count=3, slots=1)
    group = create(renter, committed, count=1, max_parallel=1, host_fault_retries=1)
    [job] = open_jobs(group)

    # when: its host faults it, and the next host too
    faulted = []
    for number in (1, 2):
        job.refresh_from_db()
        host = host_of(job)
        faulted.append(host.pk)
        with committed():
            say(host, "job.accept", job_id=job.pk, attempt=number)
            say(
                host,
                "job.finished",
                job_id=job.pk,
                attempt=number,
                status="failed",
                reason="the image is missing",
                exit_code=None,
                fault="host",
                detail="no such image",
                outputs=[],
                usage={
                    "job_id": job.pk,
                    "attempt": number,
                    "seq": 1,
                    "cpu_seconds": 0.0,
                    "wall_seconds": 0.0,
                    "memory_peak_mb": 0,
                    "memory_current_mb": 0,
                    "gpu_seconds": 0.0,
                    "is_final": True,
                },
            )

    # then: two hosts faulted it, each excluded; the task failed with its reason, uncharged
    job.refresh_from_db()
    assert len(set(faulted)) == 2
    assert job.status == JobStatus.FAILED
    assert "no host-fault retries left" in job.status_reason
    excluded = set(
        JobGroupHostExclusion.objects.filter(group=group).values_list("host_id", flat=True)
    )
    assert excluded == set(faulted)
    task = JobGroupTask.objects.get(group=group)
    assert task.status == TaskStatus.FAILED
    assert charged(job) == 0


def test_a_task_no_host_may_take_any_more_fails_at_once(
    renter, make_host, hana, alice, wire, committed
):
    # given: one host, which lost a task of the group
    [box] = hosts_for_groups(make_host, hana, count=1)
    group = create(renter, committed, count=2, max_parallel=1, host_fault_retries=3)
    [job] = open_jobs(group)
    say(box, "job.accept", job_id=job.pk, attempt=1)

    # when: the host loses it
    with committed():
        assert lease_run_out(job)

    # then: the task fails at once (the only host is excluded), and the next one too
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.status_reason == "every host that fits refused the job or lost a task of its group"
    group.refresh_from_db()
    assert statuses(group) == ["failed", "failed"]
    assert group.status == JobGroupStatus.FINISHED
    assert charged_all(group) == 0


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_ends_the_queued_tasks_at_once_stops_the_running_ones_and_starts_no_more(
    renter, hosts, alice, wire, committed
):
    # given: four tasks, two started: one running on its host, one still offered
    group = create(renter, committed, count=4, max_parallel=2)
    running, offered = open_jobs(group)
    host = host_of(running)
    say(host, "job.accept", job_id=running.pk, attempt=1)
    say(host, "job.started", job_id=running.pk, attempt=1, phase="running")
    wire.clear()

    # when
    with committed():
        response = renter.post(f"{URL}{group.pk}/cancel/")

    # then: the offered one is cancelled, the running one asked to stop; nothing new starts
    assert response.status_code == 200, response.json()
    assert response.json()["cancel_requested"] is True
    assert response.json()["status"] == "running"
    offered.refresh_from_db()
    running.refresh_from_db()
    assert offered.status == JobStatus.CANCELLED
    assert running.cancel_requested_at is not None
    cancels = wire.to(running.host_id, "job.cancel") + wire.to(offered.host_id, "job.cancel")
    assert sorted({m["job_id"] for m in cancels}) == [running.pk, offered.pk]
    assert statuses(group) == ["running", "cancelled", "skipped", "skipped"]
    assert Job.objects.filter(group=group).count() == 2

    # when: the agent reports the running one cancelled
    with committed():
        task_run_cancelled(running)

    # then: the group ends cancelled; a cancel now is refused
    group.refresh_from_db()
    assert group.status == JobGroupStatus.CANCELLED
    assert statuses(group) == ["cancelled", "cancelled", "skipped", "skipped"]
    assert Job.objects.filter(group=group).count() == 2
    assert renter.post(f"{URL}{group.pk}/cancel/").json()["error"]["code"] == "group_finished"
    assert wallet_balances(alice)["held_micros"] == 0
    assert ledger_reconcile(job_facts=job_facts).problems == []


def task_run_cancelled(job: Job) -> None:
    host = host_of(job)
    say(
        host,
        "job.finished",
        job_id=job.pk,
        attempt=job.attempt,
        status="cancelled",
        reason="cancelled",
        exit_code=None,
        outputs=[],
        usage={
            "job_id": job.pk,
            "attempt": job.attempt,
            "seq": 1,
            "cpu_seconds": 0.0,
            "wall_seconds": 0.0,
            "memory_peak_mb": 0,
            "memory_current_mb": 0,
            "gpu_seconds": 0.0,
            "is_final": True,
        },
    )


# --- the receipt, the blobs, the socket ----------------------------------------------------------


def test_the_group_receipt_sums_its_tasks_receipts_exactly(renter, hosts, alice, wire, committed):
    # given: a group run to its end, one task retried after a failure
    group = create(renter, committed, count=3, max_parallel=3, error_retries=1)
    costs = iter([(1_234, 5_679), (7_777, 3_333), (10, 21), (999, 1_001)])
    while open_jobs(group):
        cpu, wall = next(costs)
        failed = (
            open_jobs(group)[0].task_index == 1 and Job.objects.filter(task_index=1).count() == 1
        )
        with committed():
            task_run(
                open_jobs(group)[0],
                cpu_ms=cpu,
                wall_ms=wall,
                status="failed" if failed else "succeeded",
                exit_code=1 if failed else 0,
            )

    # when
    receipt = renter.get(f"{URL}{group.pk}/receipt/").json()
    per_job = [
        renter.get(f"/api/v1/jobs/{line['job_id']}/receipt/").json() for line in receipt["tasks"]
    ]

    # then: each line is its job's receipt, and the totals are their sums
    assert len(per_job) == 4
    for line, job in zip(receipt["tasks"], per_job, strict=True):
        for name in (
            "gross_micros",
            "fee_micros",
            "host_net_micros",
            "reversed_micros",
            "charged_micros",
        ):
            assert line[name] == job["totals"][name]
        assert (line["hold_micros"], line["refund_micros"], line["held_micros"]) == (
            job["hold_micros"],
            job["refund_micros"],
            job["held_micros"],
        )
    for name in receipt["totals"]:
        assert receipt["totals"][name] == sum(line[name] for line in receipt["tasks"])
    paid = receipt["totals"]["charged_micros"]
    assert paid == charged_all(group) > 0
    assert wallet_balances(alice)["available_micros"] == FUNDS - paid
    assert receipt["is_settled"] is True


def test_a_running_groups_blobs_are_in_use_until_it_ends(renter, hosts, alice, wire, committed):
    # given: a group whose later tasks will read a blob of the renter's
    from tests.jobs.test_group_create import held_blob

    shared = held_blob(alice, b"kept while the group runs\n")
    blob = Blob.objects.get(sha256=shared)
    group = create(
        renter, committed, count=3, max_parallel=1, shared_inputs=[{"path": "a", "sha256": shared}]
    )

    # then: in use while it runs, also between tasks
    assert blobs_in_use({blob.pk}) == {blob.pk}
    while open_jobs(group):
        with committed():
            task_run(open_jobs(group)[0], cpu_ms=10, wall_ms=20)
    assert blobs_in_use({blob.pk}) == set()


@pytest.mark.django_db(transaction=True)
async def test_the_owner_watches_the_groups_progress_on_its_socket(
    alice, mallory, hana, make_host, ledger
):
    # given
    await sync_to_async(ledger.fund)(alice, FUNDS)
    await sync_to_async(hosts_for_groups)(make_host, hana)

    def created() -> JobGroup:
        client = APIClient()
        client.force_authenticate(alice)
        response = client.post(URL, group_body(count=2, max_parallel=1), format="json")
        assert response.status_code == 201, response.json()
        return JobGroup.objects.get()

    group = await sync_to_async(created)()

    def socket_of(user: User | None) -> WebsocketCommunicator:
        headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
        if user is not None:
            headers.append((b"cookie", f"sessionid={session_cookie(user)}".encode()))
        return WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/job-groups/{group.pk}/", headers
        )

    owner = await sync_to_async(socket_of)(alice)
    stranger = await sync_to_async(socket_of)(mallory)
    anonymous = await sync_to_async(socket_of)(None)

    # when
    connected, _ = await owner.connect()
    first = await owner.receive_json_from(timeout=5)
    [job] = await sync_to_async(open_jobs)(group)
    await sync_to_async(task_run)(job, cpu_ms=100, wall_ms=200)
    progress = await owner.receive_json_from(timeout=5)

    # then
    assert connected
    assert (first["type"], first["status"], first["counts"]["running"]) == (
        "group.progress",
        "running",
        1,
    )
    assert first["counts"]["pending"] == 1
    assert progress["counts"]["succeeded"] == 1
    assert progress["cost_micros"] == task_cost(100, 200)
    assert await stranger.connect() == (False, 4404)
    assert await anonymous.connect() == (False, 4401)
    await owner.disconnect()
