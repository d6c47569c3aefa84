"""Two tasks of a group settling at once, with real threads on PostgreSQL: they never start
the same next index, never more than max_parallel, and never pass the group cap together.

Each ``job.finished`` is one durable transaction, as the agent socket runs it: the settlement
(the task's job row, its ledger accounts), then the group row's lock, under which the group
records the result and starts the next task. The two transactions queue on the group row."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from django.utils import timezone

from config.transactions import durable_call
from jobs.agent_messages import HANDLERS
from jobs.group_selectors import group_counts
from jobs.models import Job, JobAttempt, JobGroup, JobGroupTask, TaskStatus
from jobs.selectors import job_facts
from jobs.services.groups import group_start_batch
from ledger.services import ledger_reconcile
from tests.jobs.conftest import envelope
from tests.jobs.group_steps import TASK_CAP, group_body, host_of, hosts_for_groups, open_jobs
from tests.jobs.helpers import say
from tests.jobs.metering_steps import final
from tests.jobs.test_concurrency import race

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROUNDS = 5
URL = "/api/v1/job-groups/"


@pytest.fixture
def renter(alice, ledger, client_for):
    ledger.fund(alice, 100_000_000)
    return client_for(alice)


@pytest.fixture
def hosts(make_host, hana):
    return hosts_for_groups(make_host, hana, count=2, slots=8)


def running(job: Job) -> Job:
    """The job's host accepts and runs it; the server saw it start an hour ago."""
    host = host_of(job)
    say(host, "job.accept", job_id=job.pk, attempt=1)
    say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
    JobAttempt.objects.filter(job=job, number=1).update(
        started_at=timezone.now() - timedelta(hours=1)
    )
    return job


def finishing(job: Job, cpu_s: str, wall_s: str) -> Any:
    """The agent's job.finished of the job, as the socket runs it: one durable transaction."""
    message = envelope("job.finished", **final(job, 9, cpu_s, wall_s))
    return partial(durable_call, HANDLERS["job.finished"], host_of(job).pk, message)


def later(seconds: float, action: Any) -> Any:
    time.sleep(seconds)
    return action()


def test_two_tasks_settling_at_once_start_the_next_two_indices_once_each(renter, hosts, wire):
    for _ in range(ROUNDS):
        # given: four tasks, two at a time, both running
        response = renter.post(URL, group_body(count=4, max_parallel=2), format="json")
        assert response.status_code == 201, response.json()
        group = JobGroup.objects.get(pk=response.json()["id"])
        first, second = (running(job) for job in open_jobs(group))

        # when: both finish at the same moment
        results = race(finishing(first, "1", "2"), finishing(second, "1", "2"))

        # then: each started one more task; indices 2 and 3 once each, never three at once
        assert [reply[0][0] for reply in results] == ["ack", "ack"], results
        jobs = list(Job.objects.filter(group=group).order_by("pk"))
        assert sorted(j.task_index or 0 for j in jobs) == [0, 1, 2, 3]
        group.refresh_from_db()
        assert group.open_tasks == 2
        counts = group_counts(group)
        assert (counts["succeeded"], counts["running"], counts["pending"]) == (2, 2, 0)
        assert group.settled_cost_micros == sum(
            Job.objects.filter(pk__in=[first.pk, second.pk]).values_list("cost_micros", flat=True)
        )
        assert renter.post(f"{URL}{group.pk}/cancel/").status_code == 200  # room for the next


def test_two_tasks_settling_at_once_never_pass_the_group_cap_together(renter, hosts, wire):
    for _ in range(ROUNDS):
        # given: a cap of two and a half tasks' caps; two tasks running. After one settles
        # at 0.3 of a cap there is room for one more (0.3 + 2 <= 2.5); after both, for none
        # more (0.6 + 2 > 2.5): exactly one task may start, whoever settles first.
        body = group_body(count=4, max_parallel=2, max_cost_micros=TASK_CAP * 5 // 2)
        response = renter.post(URL, body, format="json")
        assert response.status_code == 201, response.json()
        group = JobGroup.objects.get(pk=response.json()["id"])
        first, second = (running(job) for job in open_jobs(group))
        # 40 s of CPU and of wall: 40,000 + 20,000 = 60,000 = 0.3 of a cap each

        # when
        results = race(finishing(first, "40", "40"), finishing(second, "40", "40"))

        # then: both acknowledged; one more task, index 2; the cap holds in the ledger too
        assert [reply[0][0] for reply in results] == ["ack", "ack"], results
        started = list(Job.objects.filter(group=group).exclude(pk__in=[first.pk, second.pk]))
        assert [job.task_index for job in started] == [2]
        group.refresh_from_db()
        assert (group.open_tasks, group.settled_cost_micros) == (1, 120_000)
        assert group.settled_cost_micros + group.open_tasks * TASK_CAP <= group.max_cost_micros
        tasks = dict(JobGroupTask.objects.filter(group=group).values_list("index", "status"))
        assert tasks == {
            0: TaskStatus.SUCCEEDED,
            1: TaskStatus.SUCCEEDED,
            2: TaskStatus.RUNNING,
            3: TaskStatus.PENDING,
        }
        assert renter.post(f"{URL}{group.pk}/cancel/").status_code == 200  # room for the next
    assert ledger_reconcile(job_facts=job_facts).problems == []


def test_a_settlement_and_a_background_start_of_one_group_queue_instead_of_deadlocking(
    renter, hosts, wire, settings, monkeypatch, caplog
):
    # given: tasks started one per batch, the background start held back: one task runs
    settings.JOB_GROUP_START_BATCH = 1
    monkeypatch.setattr("jobs.tasks.group_start.delay_on_commit", lambda group_id: None)
    caplog.set_level(logging.INFO, logger="config.transactions")
    # The start begins a little later each round, so that the two meet at different points
    # of the settlement (both lock the renter's wallet: the release, the new holds; both take
    # the group row first, so they queue there).
    for delay in (0.0, 0.01, 0.02, 0.04, 0.08):
        response = renter.post(URL, group_body(count=8, max_parallel=4), format="json")
        assert response.status_code == 201, response.json()
        group = JobGroup.objects.get(pk=response.json()["id"])
        [first] = (running(job) for job in open_jobs(group))

        # when: its settlement (the wallet, by its release) and a start (the wallet, by new
        # holds) of the same group at once
        start = partial(durable_call, group_start_batch, group.pk)
        results = race(finishing(first, "1", "2"), partial(later, delay, start))

        # then: neither was a deadlock's victim; the group holds max_parallel, each index once
        assert not [r for r in caplog.records if "retrying after" in r.getMessage()]
        assert results[0][0][0] == "ack", results
        assert results[1] in (0, 1), results
        group.refresh_from_db()
        assert group.open_tasks == 4
        indices = Job.objects.filter(group=group).values_list("task_index", flat=True)
        assert sorted(index or 0 for index in indices) == list(range(5))
        assert renter.post(f"{URL}{group.pk}/cancel/").status_code == 200  # room for the next
