"""A submit is one transaction: a failure before any of its statements leaves nothing, and the
submit that gets through leaves a funded, offerable job (PostgreSQL, real commits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError, connection

from accounts.models import IdempotencyRecord
from jobs.models import Job, JobAttempt, JobFile, JobStatus
from ledger.models import LedgerTransaction, Posting

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

JOBS = "/api/v1/jobs/"
FUNDS = 5_000_000
CAP = 1_000_000
BODY = {
    "code": "print('hello')",
    "placement": "auto",
    "cpus": 1,
    "memory_mb": 1024,
    "timeout_seconds": 600,
    "max_cost_micros": CAP,
}


class Crash:
    """An execute wrapper that fails the ``at``-th statement (from 0), before it runs."""

    def __init__(self, at: int) -> None:
        self.at, self.seen, self.fired = at, 0, False

    def __call__(self, execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        index, self.seen = self.seen, self.seen + 1
        if index == self.at:
            self.fired = True
            raise OperationalError(f"injected before statement {index}: {sql[:60]}")
        return execute(sql, *args)


def ledger_rows() -> tuple[int, int]:
    return LedgerTransaction.objects.count(), Posting.objects.count()


def test_a_crash_before_any_statement_of_a_submit_leaves_nothing_or_a_funded_job(
    client_for, alice, make_host, hana, ledger, wire
):
    # given
    box = make_host(hana, "box")
    ledger.fund(alice, FUNDS)
    api = client_for(alice)
    before = ledger_rows()

    # when: the n-th statement of the submit fails, for every n until one gets through
    crashed_at = []
    for at in range(500):
        crash = Crash(at)
        try:
            with connection.execute_wrapper(crash):
                response = api.post(JOBS, BODY, format="json", headers={"Idempotency-Key": "k1"})
        except OperationalError:
            assert crash.fired
        if not crash.fired:
            break
        crashed_at.append(at)

        # then, after each: nothing at all
        assert (Job.objects.count(), JobFile.objects.count(), JobAttempt.objects.count()) == (
            0,
            0,
            0,
        ), f"crash at statement {at}"
        assert ledger_rows() == before, f"crash at statement {at}"
        assert ledger.wallets[alice.pk] == FUNDS, f"crash at statement {at}"
        assert IdempotencyRecord.objects.count() == 0, f"crash at statement {at}"

    # then: every statement was tried, and the submit that got through is funded and offered
    assert len(crashed_at) > 10
    assert response.status_code == 201
    job = Job.objects.get()
    assert (job.status, job.attempt, job.host_id) == (JobStatus.OFFERED, 1, box.pk)
    assert job.attempts.get().status == "offered"
    assert ledger.escrow[job.pk] == CAP
    assert ledger.wallets[alice.pk] == FUNDS - CAP
    assert ledger.keys == [f"job-hold:{job.pk}"]
    assert [kind for _host, kind, _data in wire.sent] == ["job.offer"]
    ledger.check()
