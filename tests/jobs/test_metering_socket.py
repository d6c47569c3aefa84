"""Usage reports through the real agent socket: the next report is answered on the event loop
(one statement, no thread hop); everything else falls through to the ordinary handler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async

from agent.protocol import encode
from hosts.models import Host
from jobs import agent_messages
from jobs.agent_messages import HANDLERS, handle_job_usage, handle_job_usage_decide
from jobs.models import JobAttempt, UsageReport
from jobs.services import usage, usage_async
from tests.hosts.factories import credential_create
from tests.jobs.metering_steps import FUNDS, RATES, metered_job, run
from tests.jobs.test_agent_socket import connected_agent, receive_type

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def fast_connections() -> AsyncIterator[None]:
    """The event loop's own database connections are closed at the end of the test."""
    yield
    await usage_async.connections_close()


@pytest.fixture
def running(alice: Any, hana: Any, make_host: Any, ledger: Any) -> tuple[Any, Host, str]:
    ledger.fund(alice, FUNDS)
    host = make_host(hana, "metered", **RATES)
    job = metered_job(alice, host)
    run(job, host)
    return job, host, credential_create(host)


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The seqs the ordinary (thread) handler saw; it still answers them."""
    seen: list[int] = []

    def recording(handler: Any) -> Any:
        def handle(host_id: int, envelope: Any) -> Any:
            seen.append(envelope["data"]["seq"])
            return handler(host_id, envelope)

        return handle

    monkeypatch.setitem(HANDLERS, "job.usage", recording(handle_job_usage))
    monkeypatch.setattr(
        agent_messages, "handle_job_usage_decide", recording(handle_job_usage_decide)
    )
    return seen


def _report(job: Any, seq: int, cpu: float, wall: float) -> str:
    data = {
        "job_id": job.pk,
        "attempt": 1,
        "seq": seq,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "memory_peak_mb": 64,
        "memory_current_mb": 32,
        "gpu_seconds": 0.0,
    }
    return encode("job.usage", data)


async def test_the_next_report_is_answered_on_the_event_loop(running, handled, fast_connections):
    # given
    job, _host, credential = running
    socket, _ = await connected_agent(credential, running_jobs=[{"job_id": job.pk, "attempt": 1}])

    # when: two new reports, then a repeat of the second
    answers = []
    for seq in (1, 2, 2):
        await socket.send_to(text_data=_report(job, seq, 1.5 * seq, 1.0 * seq))
        answers.append((await receive_type(socket, "usage.ack"))["data"])

    # then: the new ones never reached the thread handler; the repeat did (and changed nothing)
    assert [(a["seq"], a["stop"]) for a in answers] == [(1, False), (2, False), (2, False)]
    assert handled == [2]
    attempt = await database_sync_to_async(JobAttempt.objects.get)(job=job)
    assert (attempt.usage_seq, attempt.usage_cpu_ms, attempt.usage_wall_ms) == (2, 3_000, 2_000)
    reports = await database_sync_to_async(
        lambda: list(UsageReport.objects.filter(attempt=attempt).values_list("seq", flat=True))
    )()
    assert sorted(reports) == [1, 2]
    await socket.disconnect()


async def test_an_impossible_report_falls_through_and_is_refused(
    running, handled, fast_connections
):
    # given
    job, host, credential = running
    socket, _ = await connected_agent(credential, running_jobs=[{"job_id": job.pk, "attempt": 1}])

    # when: 10 s of CPU in 1 s of wall time on 2 cores
    await socket.send_to(text_data=_report(job, 1, 10.0, 1.0))
    error = await receive_type(socket, "error")

    # then
    assert handled == [1]
    assert error["data"]["code"] == "usage_refused"
    assert error["data"]["message"].startswith("cpu_exceeds_wall: ")
    flagged = await database_sync_to_async(lambda: Host.objects.get(pk=host.pk).flagged_reports)()
    assert flagged == 1
    await socket.disconnect()


async def test_a_database_error_on_the_fast_path_falls_back_to_the_handler(
    running, handled, fast_connections, monkeypatch
):
    # given: the fast statement fails
    job, _host, credential = running
    monkeypatch.setattr(usage_async, "fast_sql", lambda params: "SELECT broken FROM nowhere")
    socket, _ = await connected_agent(credential, running_jobs=[{"job_id": job.pk, "attempt": 1}])

    # when
    await socket.send_to(text_data=_report(job, 1, 1.0, 1.0))
    ack = await receive_type(socket, "usage.ack")

    # then: answered and stored all the same, by the ordinary handler
    assert (ack["data"]["seq"], handled) == (1, [1])
    attempt = await database_sync_to_async(JobAttempt.objects.get)(job=job)
    assert attempt.usage_seq == 1
    await socket.disconnect()


OUT_OF_BOUNDS = {
    "cpu 1e300": {"cpu_seconds": 1e300},
    "seq 2**63": {"seq": 2**63},
    "memory_peak_mb 2**40": {"memory_peak_mb": 2**40},
    "negative seq": {"seq": -1},
    "negative wall": {"wall_seconds": -1.0},
    "NaN cpu": {"cpu_seconds": float("nan")},
    "Infinity wall": {"wall_seconds": float("inf")},
    "bool seq": {"seq": True},
    "bool memory": {"memory_current_mb": False},
}


@pytest.mark.parametrize("change", OUT_OF_BOUNDS.values(), ids=OUT_OF_BOUNDS.keys())
async def test_an_out_of_range_number_is_a_bad_field_and_changes_nothing(
    running, handled, fast_connections, change, caplog
):
    # given
    job, _host, credential = running
    socket, _ = await connected_agent(credential, running_jobs=[{"job_id": job.pk, "attempt": 1}])
    data = {
        "job_id": job.pk,
        "attempt": 1,
        "seq": 1,
        "cpu_seconds": 1.0,
        "wall_seconds": 1.0,
        "memory_peak_mb": 64,
        "memory_current_mb": 32,
        "gpu_seconds": 0.0,
        **change,
    }

    # when (json.dumps writes NaN and Infinity as the bare JSON-ish literals)
    await socket.send_to(text_data=encode("job.usage", data))
    error = await receive_type(socket, "error")

    # then: refused at the edge, never an internal error; nothing stored, no traceback
    assert error["data"]["code"] == "bad_field"
    assert handled == []
    assert not [r for r in caplog.records if r.exc_info]
    attempt = await database_sync_to_async(JobAttempt.objects.get)(job=job)
    assert (attempt.usage_seq, attempt.usage_cpu_ms) == (-1, 0)
    # and the socket still serves a sane report
    await socket.send_to(text_data=_report(job, 1, 1.0, 1.0))
    ack = await receive_type(socket, "usage.ack")
    assert ack["data"]["seq"] == 1
    await socket.disconnect()


async def test_a_negative_log_offset_is_a_bad_field(running, fast_connections):
    # given
    job, _host, credential = running
    socket, _ = await connected_agent(credential, running_jobs=[{"job_id": job.pk, "attempt": 1}])

    # when
    chunk = {"job_id": job.pk, "attempt": 1, "offset": -5, "data": "hello"}
    await socket.send_to(text_data=encode("job.log", chunk))
    error = await receive_type(socket, "error")

    # then
    assert error["data"]["code"] == "bad_field"
    attempt = await database_sync_to_async(JobAttempt.objects.get)(job=job)
    assert attempt.log_offset == 0
    await socket.disconnect()


async def test_a_report_the_statement_did_not_take_is_not_run_again_on_the_thread(
    running, handled, fast_connections, monkeypatch
):
    # given: the thread's copy of the one statement records its calls
    job, _host, credential = running
    sync_runs: list[int] = []
    real = usage.usage_ingest_fast

    def recording(host_id: int, report: Any) -> Any:
        sync_runs.append(report["seq"])
        return real(host_id, report)

    monkeypatch.setattr("jobs.agent_messages.usage_ingest_fast", recording)
    socket, _ = await connected_agent(credential, running_jobs=[{"job_id": job.pk, "attempt": 1}])

    # when: a new report, then its repeat (which the statement does not take)
    for seq in (1, 1):
        await socket.send_to(text_data=_report(job, seq, 1.0, 1.0))
        await receive_type(socket, "usage.ack")

    # then: the repeat was decided on the thread without running the statement a second time
    assert (handled, sync_runs) == ([1], [])
    await socket.disconnect()
