"""Creating a job group (POST /api/v1/job-groups/): every bad field named at once and nothing
written; the first tasks' jobs, holds and offers, and only those; what a task's offer carries
(its index, the count, its argument as /inputs/task.json); Idempotency-Key. PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from blobs.models import Blob, BlobHolding, HoldingOrigin
from blobs.store import blob_store
from jobs.models import (
    Job,
    JobGroup,
    JobGroupInput,
    JobGroupTask,
    JobInput,
    JobStatus,
    TaskStatus,
)
from jobs.selectors import blobs_in_use
from ledger.models import LedgerTransaction
from ledger.selectors import wallet_balances
from tests.jobs.group_steps import GROUP_CAP, TASK_CAP, group_body, hosts_for_groups

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

FUNDS = 10_000_000
URL = "/api/v1/job-groups/"


@pytest.fixture
def renter(alice, ledger, client_for):
    ledger.fund(alice, FUNDS)
    return client_for(alice)


@pytest.fixture
def hosts(make_host, hana):
    return hosts_for_groups(make_host, hana)


def held_blob(user: Any, content: bytes) -> str:
    """A blob the user holds (as if uploaded); its sha256."""
    sha256 = hashlib.sha256(content).hexdigest()
    blob_store().save(f"blobs/{sha256[:2]}/{sha256}", __import__("io").BytesIO(content))
    blob = Blob.objects.create(sha256=sha256, size=len(content))
    BlobHolding.objects.create(user=user, blob=blob, origin=HoldingOrigin.UPLOAD, name="x")
    return sha256


def nothing_written(alice: Any) -> None:
    assert JobGroup.objects.count() == 0
    assert JobGroupTask.objects.count() == 0
    assert Job.objects.count() == 0
    assert wallet_balances(alice)["available_micros"] == FUNDS
    assert LedgerTransaction.objects.exclude(key__startswith="test-funds:").count() == 0


def refusal(response: Any) -> tuple[int, str, set[str]]:
    error = response.json()["error"]
    return response.status_code, error["code"], set(error["fields"])


# --- refusals --------------------------------------------------------------------------------


def test_every_bad_group_field_is_named_at_once_and_nothing_is_written(renter, hosts, alice):
    # given: bad values of the group's fields and a job field
    body = group_body(
        count=0,
        max_parallel=0,
        task_max_cost_micros=None,
        host_fault_retries=-1,
        error_retries=99,
        memory_mb=1,
    )

    # when
    response = renter.post(URL, body, format="json")

    # then
    assert refusal(response) == (
        400,
        "invalid",
        {
            "count",
            "max_parallel",
            "task_max_cost_micros",
            "host_fault_retries",
            "error_retries",
            "memory_mb",
        },
    )
    nothing_written(alice)


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"count": None}, {"count"}),  # neither count nor inputs
        ({"inputs": [{}]}, {"count"}),  # both
        ({"count": 10_001}, {"count"}),  # past JOB_GROUP_MAX_TASKS
        ({"max_parallel": 501}, {"max_parallel"}),  # past JOB_GROUP_MAX_PARALLEL
        ({"max_cost_micros": 1.5}, {"max_cost_micros"}),  # money is a JSON integer
        ({"code": None}, {"code"}),  # the template's own rules
    ],
)
def test_the_group_fields_are_checked(change, fields, renter, hosts, alice):
    response = renter.post(URL, group_body(**change), format="json")

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == fields
    nothing_written(alice)


def test_each_tasks_problem_is_named_by_its_index(renter, hosts, alice):
    # given: four tasks, each wrong in its own way
    inputs = [
        5,
        {"argument": 1, "files": []},
        {"argument": "x" * 70_000},
        {"inputs": "data.csv"},
    ]

    # when: with a bad job field too
    body = group_body(count=None, inputs=inputs, memory_mb=1)
    response = renter.post(URL, body, format="json")

    # then: all of them named at once
    assert refusal(response) == (
        400,
        "invalid",
        {"inputs[0]", "inputs[1]", "inputs[2].argument", "inputs[3].inputs", "memory_mb"},
    )
    nothing_written(alice)


def test_task_inputs_are_checked_as_a_submits_and_named_by_task(renter, hosts, alice):
    # given: a shared input and tasks whose own inputs are wrong
    shared = held_blob(alice, b"shared\n")
    inputs = [
        {"argument": 0, "inputs": [{"path": "../x", "sha256": shared}]},
        {"argument": 1, "inputs": [{"path": "x", "sha256": "f" * 64}]},
        {"argument": 2, "inputs": [{"path": "task.json", "sha256": shared}]},
        {"argument": 3, "inputs": [{"path": "common.txt", "sha256": shared}]},
        {"argument": 4, "inputs": [{"path": "ok.txt", "sha256": shared}]},
    ]
    body = group_body(
        count=None,
        inputs=inputs,
        shared_inputs=[{"path": "common.txt", "sha256": shared}],
    )

    # when
    response = renter.post(URL, body, format="json")

    # then: each named under its task; the good one is not
    assert refusal(response) == (
        400,
        "invalid",
        {
            "inputs[0].inputs[0].path",
            "inputs[1].inputs[0].sha256",
            "inputs[2].inputs[0].path",
            "inputs[3].inputs[0].path",
        },
    )
    nothing_written(alice)


def test_the_shared_inputs_and_the_caps_are_named_as_the_group_names_them(renter, hosts, alice):
    # given: a bad shared input, a task cap below a minute at the rates, a group cap below it
    body = group_body(
        shared_inputs=[{"path": "/etc/passwd", "sha256": "a" * 64}],
        task_max_cost_micros=1_000,
        max_cost_micros=999,
    )

    # when
    response = renter.post(URL, body, format="json")

    # then
    status, _, fields = refusal(response)
    assert status == 400
    assert fields == {"shared_inputs[0].path", "max_cost_micros"}
    nothing_written(alice)

    # and: with the paths right, the task cap is the submit's cap check, under its group name
    response = renter.post(
        URL, group_body(task_max_cost_micros=1_000, max_cost_micros=1_000), format="json"
    )
    assert refusal(response) == (400, "cap_too_low", {"task_max_cost_micros"})
    nothing_written(alice)


def test_a_group_no_online_host_fits_is_refused(renter, hosts, alice):
    response = renter.post(URL, group_body(cpus=64), format="json")

    assert refusal(response)[:2] == (409, "no_host_fits")
    nothing_written(alice)


def test_a_wallet_that_cannot_cover_the_first_tasks_holds_is_refused(
    alice, hana, ledger, client_for, hosts
):
    # given: enough for one task's hold, not for the two that start at once
    ledger.fund(alice, TASK_CAP + 1)
    before = wallet_balances(alice)["available_micros"]

    # when
    response = client_for(alice).post(URL, group_body(max_parallel=2), format="json")

    # then
    assert response.status_code == 402
    assert response.json()["error"]["fields"] == {
        "available_micros": [str(before)],
        "required_micros": [str(2 * TASK_CAP)],
    }
    assert JobGroup.objects.count() == 0
    assert Job.objects.count() == 0
    assert wallet_balances(alice)["available_micros"] == before


# --- what is written ---------------------------------------------------------------------------


def test_only_max_parallel_tasks_start_and_hold_their_cap(renter, hosts, alice, wire, committed):
    # when
    with committed():
        response = renter.post(URL, group_body(count=5, max_parallel=2), format="json")

    # then: two jobs, each offered with its own hold; three tasks wait without a job
    assert response.status_code == 201, response.json()
    created = response.json()
    group = JobGroup.objects.get(pk=created["id"])
    jobs = list(Job.objects.filter(group=group).order_by("task_index"))
    assert [(j.task_index, j.status, j.max_cost_micros) for j in jobs] == [
        (0, JobStatus.OFFERED, TASK_CAP),
        (1, JobStatus.OFFERED, TASK_CAP),
    ]
    assert wallet_balances(alice) == {
        "available_micros": FUNDS - 2 * TASK_CAP,
        "held_micros": 2 * TASK_CAP,
        "balance_micros": FUNDS,
    }
    statuses = list(
        JobGroupTask.objects.filter(group=group).order_by("index").values_list("status")
    )
    assert [s for (s,) in statuses] == ["running", "running", "pending", "pending", "pending"]
    assert (group.open_tasks, group.settled_cost_micros, group.status) == (2, 0, "running")
    assert created["counts"]["running"] == 2
    assert created["counts"]["pending"] == 3
    assert created["tasks"]["count"] == 5
    assert [t["job_id"] for t in created["tasks"]["results"]] == [
        jobs[0].pk,
        jobs[1].pk,
        None,
        None,
        None,
    ]
    assert (created["max_cost_micros"], created["task_max_cost_micros"]) == (GROUP_CAP, TASK_CAP)


def test_a_tasks_offer_names_its_index_and_count_and_carries_its_argument_as_task_json(
    renter, hosts, alice, wire, committed
):
    # given: a shared input and a task input the renter holds
    shared = held_blob(alice, b"every task reads me\n")
    own = held_blob(alice, b"only task 1 reads me\n")
    inputs: list[dict[str, Any]] = [
        {"argument": {"n": 0, "name": "zéro"}},
        {"argument": [1, 2.5, None], "inputs": [{"path": "mine/data.txt", "sha256": own}]},
        {},
    ]
    body = group_body(
        count=None,
        inputs=inputs,
        max_parallel=3,
        shared_inputs=[{"path": "common.txt", "sha256": shared}],
    )

    # when
    with committed():
        response = renter.post(URL, body, format="json")

    # then: each task's offer says which task it is, and lists its inputs
    assert response.status_code == 201, response.json()
    offers = {offer["job_id"]: offer for _, kind, offer in wire.sent if kind == "job.offer"}
    jobs = list(Job.objects.filter(group_id=response.json()["id"]).order_by("task_index"))
    assert [offers[j.pk]["task"] for j in jobs] == [
        {"index": 0, "count": 3},
        {"index": 1, "count": 3},
        {"index": 2, "count": 3},
    ]
    paths = [sorted(i["path"] for i in offers[j.pk]["inputs"]) for j in jobs]
    assert paths == [
        ["common.txt", "task.json"],
        ["common.txt", "mine/data.txt", "task.json"],
        ["common.txt"],  # no argument: no task.json
    ]
    # and: task.json is a blob in use by its job, with the argument's JSON as its bytes
    arguments = [b'{"n":0,"name":"z\xc3\xa9ro"}', b"[1,2.5,null]"]
    for job, argument in zip(jobs[:2], arguments, strict=True):
        row = JobInput.objects.get(job=job, path="task.json")
        assert row.blob is not None
        assert row.sha256 == hashlib.sha256(argument).hexdigest()
        assert row.size == len(argument)
        assert blob_store().open(row.blob.storage_name).read() == argument
        assert json.loads(argument) == inputs[jobs.index(job)].get("argument")
        assert not BlobHolding.objects.filter(blob=row.blob).exists()  # nobody's: the job's
        assert blobs_in_use({row.blob.pk}) == {row.blob.pk}
    assert JobGroupInput.objects.filter(group_id=response.json()["id"]).count() == 2


def test_a_repeated_create_with_its_idempotency_key_makes_one_group(
    renter, hosts, alice, wire, committed
):
    # given
    headers = {"HTTP_IDEMPOTENCY_KEY": "group-1"}
    with committed():
        first = renter.post(URL, group_body(), format="json", **headers)

    # when
    again = renter.post(URL, group_body(), format="json", **headers)
    other = renter.post(URL, group_body(count=6), format="json", **headers)

    # then
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert JobGroup.objects.count() == 1
    assert Job.objects.count() == 2


def test_the_group_cap_limits_the_first_wave(renter, hosts, alice, wire, committed):
    # given: a cap of two and a half tasks' caps, ten tasks, five at once
    body = group_body(count=10, max_parallel=5, max_cost_micros=TASK_CAP * 5 // 2)

    # when
    with committed():
        response = renter.post(URL, body, format="json")

    # then: two start (a third's cap would pass the group's)
    assert response.status_code == 201, response.json()
    assert Job.objects.count() == 2
    assert wallet_balances(alice)["held_micros"] == 2 * TASK_CAP
    assert TaskStatus.PENDING in set(JobGroupTask.objects.values_list("status", flat=True))


def test_a_task_whose_inputs_pass_the_byte_cap_with_the_shared_ones_is_refused(
    renter, hosts, alice, settings
):
    # given: 600 bytes shared, and one task adding 500 (another only 100), a cap of 1000
    settings.JOB_INPUTS_MAX_BYTES = 1_000
    url = "https://data.example.org/"
    inputs = [
        {"inputs": [{"path": "a", "url": url + "a", "sha256": "a" * 64, "size": 100}]},
        {"inputs": [{"path": "b", "url": url + "b", "sha256": "b" * 64, "size": 500}]},
    ]
    shared = [{"path": "s", "url": url + "s", "sha256": "c" * 64, "size": 600}]
    body = group_body(count=None, inputs=inputs, shared_inputs=shared)

    # when
    response = renter.post(URL, body, format="json")

    # then
    assert refusal(response) == (413, "inputs_too_large", {"inputs"})
    nothing_written(alice)


def test_a_wide_first_wave_starts_a_batch_in_the_create_and_the_rest_after_it(
    renter, hosts, alice, wire, committed, settings, monkeypatch
):
    # given: batches of two, five tasks at once; the background start left undone for now
    settings.JOB_GROUP_START_BATCH = 2
    queued: list[int] = []
    monkeypatch.setattr("jobs.tasks.group_start.delay_on_commit", queued.append)

    # when
    with committed():
        response = renter.post(URL, group_body(count=7, max_parallel=5), format="json")

    # then: the create's own transaction started two, and queued the start of the rest
    assert response.status_code == 201, response.json()
    group_id = response.json()["id"]
    assert Job.objects.filter(group_id=group_id).count() == 2
    assert queued == [group_id]

    # when: the background task runs, a batch per transaction
    from jobs.tasks import group_start

    with committed():
        group_start(group_id)

    # then: five hold at once, no more
    assert Job.objects.filter(group_id=group_id).count() == 5
    assert wallet_balances(alice)["held_micros"] == 5 * TASK_CAP


def test_the_reaper_starts_what_a_lost_background_start_left(
    renter, hosts, alice, wire, committed, settings, monkeypatch
):
    # given: the background start never ran (its worker died)
    settings.JOB_GROUP_START_BATCH = 2
    monkeypatch.setattr("jobs.tasks.group_start.delay_on_commit", lambda group_id: None)
    with committed():
        response = renter.post(URL, group_body(count=7, max_parallel=5), format="json")
    group_id = response.json()["id"]

    # when: the reaper's passes
    from jobs.tasks import jobs_reap_pass

    with committed():
        first = jobs_reap_pass()
        second = jobs_reap_pass()
        third = jobs_reap_pass()

    # then: a batch a pass until the group holds max_parallel tasks; then nothing
    assert (first.groups_advanced, second.groups_advanced, third.groups_advanced) == (1, 1, 0)
    assert Job.objects.filter(group_id=group_id).count() == 5
