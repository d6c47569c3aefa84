"""The runtime-backed job manager against a scripted runtime and a recording link (no Docker)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from agent.jobrunner.attempt import BUDGET_REASON, SERVER_BUDGET_REASON
from agent.jobrunner.offer import cap_from_offer
from agent.jobrunner.runtime_manager import AT_CAPACITY_REASON, Capacity, RuntimeJobManager
from agent.jobrunner.state import AttemptState, state_read, state_write
from agent.jobrunner.uploads import UploadFailed
from agent.protocol import AGENT_MESSAGES, decode, encode
from agent.runtime.types import Outcome, OwnedContainer, UsageSample
from tests.agent.jobrunner_fakes import (
    FAST,
    FakeLink,
    FakeRuntime,
    FakeUploader,
    offer,
    output_file,
)

SUCCESS = Outcome("succeeded", "exit code 0", 0)


@pytest.fixture
def runtime(tmp_path):
    return FakeRuntime(tmp_path / "work")


@pytest.fixture
def link():
    return FakeLink()


@pytest.fixture
def uploader():
    return FakeUploader()


@pytest.fixture
async def manager(runtime, link, uploader):
    jobs = RuntimeJobManager(runtime, uploader=uploader, capacity=Capacity(slots=2), options=FAST)
    await jobs.start(link)
    yield jobs
    await jobs.stop()


def valid_on_the_wire(link: FakeLink) -> None:
    """Everything the manager sent passes the protocol's own validation."""
    for kind, data, message_id in link.sent:
        decode(encode(kind, data, message_id), AGENT_MESSAGES)


async def ack_finished(manager, link):
    await link.next_of("job.finished")
    await manager.on_ack("ack", {"ack_id": link.id_of_last("job.finished")})


async def until_done(manager, key=(7, 1)):
    deadline = asyncio.get_running_loop().time() + 5
    while key in manager.attempts:
        assert asyncio.get_running_loop().time() < deadline, f"{key} still held"
        await asyncio.sleep(0.01)


# --- the message sequence -----------------------------------------------------------------


async def test_a_job_runs_from_accept_to_an_acknowledged_finish(
    manager, runtime, link, uploader, tmp_path
):
    # given
    runtime.outputs = [output_file(tmp_path, "result.txt", b"42\n")]
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls, "the start")
    runtime.output(7, 1, b"hello\n")
    await link.next_of("job.log")

    # when
    runtime.exit(7, 1, SUCCESS)
    [finished] = await link.next_of("job.finished")

    # then
    assert link.types(without=("job.usage",))[:5] == [
        "job.accept",
        "job.started",
        "job.started",
        "job.log",
        "job.finished",
    ]
    assert [s["phase"] for s in link.of("job.started")] == ["preparing", "running"]
    assert link.of("job.log") == [{"job_id": 7, "attempt": 1, "offset": 0, "data": "hello\n"}]
    assert finished["status"] == "succeeded"
    assert finished["reason"] == "exit code 0"
    assert finished["exit_code"] == 0
    assert finished["log_bytes"] == len(b"hello\n")  # the whole log, for is_complete
    sha = finished["outputs"][0]["sha256"]
    assert finished["outputs"] == [{"name": "result.txt", "size": 3, "sha256": sha}]
    assert uploader.uploaded == [(7, 1, "result.txt")]
    final = link.of("job.usage")[-1]
    assert final["is_final"] is True
    assert finished["usage"] == final
    # the last usage report goes out before job.finished
    assert link.types()[-2:] == ["job.usage", "job.finished"]
    # held (and listed for the lease) until the server acknowledges the finish
    assert manager.running_jobs() == [{"job_id": 7, "attempt": 1}]
    assert "cleanup" not in runtime.names()

    # when the server acknowledges it
    await manager.on_ack("ack", {"ack_id": link.id_of_last("job.finished")})
    await until_done(manager)

    # then
    assert runtime.names() == ["prepare", "start", "collect_outputs", "cleanup"]
    assert manager.running_jobs() == []
    valid_on_the_wire(link)


async def test_the_final_report_is_sent_again_until_acknowledged(manager, runtime, link):
    # given a finished job whose job.finished nobody acknowledges
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)
    runtime.exit(7, 1, SUCCESS)

    # when
    finishes = await link.next_of("job.finished", count=3)

    # then: the same report each time, with the final usage before it
    assert finishes[0] == finishes[1] == finishes[2]
    assert link.types()[-2:] == ["job.usage", "job.finished"]
    assert link.of("job.usage")[-1] == finishes[0]["usage"]

    # when one of them is acknowledged
    await manager.on_ack("ack", {"ack_id": link.id_of_last("job.finished")})
    await until_done(manager)
    count = len(link.of("job.finished"))
    await asyncio.sleep(FAST.final_resend_seconds * 3)

    # then nothing more is sent
    assert len(link.of("job.finished")) == count
    assert runtime.names()[-1] == "cleanup"


async def test_a_failing_exit_is_reported_with_its_code(manager, runtime, link):
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    runtime.exit(7, 1, Outcome("failed", "exit code 3", 3))
    [finished] = await link.next_of("job.finished")

    assert (finished["status"], finished["reason"], finished["exit_code"]) == (
        "failed",
        "exit code 3",
        3,
    )


async def test_an_install_failure_ends_the_job_with_its_reason_and_log(manager, runtime, link):
    # given
    runtime.prepare_failure = Outcome("failed", "install failed: no such package")
    runtime.install_log = b"ERROR: No matching distribution found for nope\n"

    # when
    await manager.on_offer(offer())
    [finished] = await link.next_of("job.finished")

    # then
    assert finished["status"] == "failed"
    assert finished["reason"] == "install failed: no such package"
    assert finished["exit_code"] is None
    assert finished["outputs"] == []
    assert link.of("job.log") == [
        {
            "job_id": 7,
            "attempt": 1,
            "offset": 0,
            "data": "ERROR: No matching distribution found for nope\n",
        }
    ]
    assert [s["phase"] for s in link.of("job.started")] == ["preparing"]
    assert "start" not in runtime.names()
    await ack_finished(manager, link)
    await until_done(manager)
    assert runtime.names() == ["prepare", "kill"]


async def test_outputs_are_retried_and_only_uploaded_ones_are_declared(
    manager, runtime, link, uploader, tmp_path
):
    # given: the first file fails twice then goes through; the second is refused for good
    runtime.outputs = [
        output_file(tmp_path, "a.txt", b"a"),
        output_file(tmp_path, "b.bin", b"bb"),
    ]
    uploader.failures = {
        "a.txt": [
            UploadFailed("HTTP 503", is_permanent=False),
            UploadFailed("cannot reach the server", is_permanent=False),
        ],
        "b.bin": [UploadFailed("HTTP 413: too large", is_permanent=True)],
    }
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    # when
    runtime.exit(7, 1, SUCCESS)
    [finished] = await link.next_of("job.finished")

    # then
    assert uploader.uploaded == [(7, 1, "a.txt")]
    assert [o["name"] for o in finished["outputs"]] == ["a.txt"]


# --- rejection and capacity ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"files": [{"path": "main.py", "content_b64": "%%%"}]}, "not valid base64"),
        ({"entrypoint": "other.py"}, "the entrypoint 'other.py' is not one of the files"),
        ({"requirements": ["--index-url=http://evil"]}, "is not a plain package specifier"),
        ({"files": [{"path": "../x.py", "content_b64": ""}]}, "has an empty, '.' or '..'"),
    ],
)
async def test_an_offer_the_runtime_refuses_is_rejected_with_the_reason(
    manager, runtime, link, change, reason
):
    # when
    await manager.on_offer(offer(**change))

    # then
    [(kind, data, _)] = link.sent
    assert kind == "job.reject"
    assert (data["job_id"], data["attempt"], data["code"]) == (7, 1, "refused")
    assert reason in data["reason"]
    assert manager.running_jobs() == []
    assert runtime.calls == []


async def test_offers_past_max_concurrent_jobs_are_rejected(manager, runtime, link):
    # given two jobs held (the limit is 2)
    await manager.on_offer(offer(job_id=1))
    await manager.on_offer(offer(job_id=2))

    # when
    await manager.on_offer(offer(job_id=3))

    # then: busy, which the server never holds against the job
    assert link.of("job.reject") == [
        {"job_id": 3, "attempt": 1, "reason": AT_CAPACITY_REASON, "code": "busy"}
    ]
    assert manager.running_jobs() == [{"job_id": 1, "attempt": 1}, {"job_id": 2, "attempt": 1}]


async def test_a_finished_attempt_waiting_for_its_ack_frees_its_slot(runtime, link, uploader):
    # given one slot, and a job whose finish the server has not acknowledged yet
    manager = RuntimeJobManager(
        runtime, uploader=uploader, capacity=Capacity(slots=1), options=FAST
    )
    await manager.start(link)
    await manager.on_offer(offer(job_id=1))
    await link.until(lambda: ("start", 1, 1) in runtime.calls)
    runtime.exit(1, 1, SUCCESS)
    await link.next_of("job.finished")

    # when the server (which already counts the host free) offers the next job
    await manager.on_offer(offer(job_id=2))

    # then it is taken, and both are still reported for their leases
    assert link.of("job.reject") == []
    assert link.of("job.accept") == [{"job_id": 1, "attempt": 1}, {"job_id": 2, "attempt": 1}]
    assert manager.running_jobs() == [{"job_id": 1, "attempt": 1}, {"job_id": 2, "attempt": 1}]
    assert manager.slots_used() == 1
    await manager.stop()


async def test_an_offer_sent_again_after_a_reconnect_is_not_run_twice(manager, runtime, link):
    await manager.on_offer(offer())
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    assert link.of("job.accept") == [{"job_id": 7, "attempt": 1}]
    assert runtime.names().count("prepare") == 1


# --- logs ---------------------------------------------------------------------------------


async def test_log_offsets_count_the_utf8_bytes_sent_and_characters_are_never_cut(
    runtime, link, uploader
):
    # given tiny chunks, a character split between two reads and an undecodable byte
    options = dataclasses.replace(FAST, log_chunk_bytes=4)
    manager = RuntimeJobManager(runtime, uploader=uploader, options=options)
    await manager.start(link)
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    # when
    runtime.output(7, 1, b"h\xc3")
    runtime.output(7, 1, b"\xa9llo \xff!\n")
    runtime.exit(7, 1, SUCCESS)
    await link.next_of("job.finished")

    # then
    chunks = link.of("job.log")
    text = "".join(c["data"] for c in chunks)
    assert text == "héllo \ufffd!\n"
    offset = 0
    for chunk in chunks:
        assert chunk["offset"] == offset
        size = len(chunk["data"].encode())
        assert size <= 4 or len(chunk["data"]) == 1
        offset += size
    assert offset == len(text.encode())
    await manager.stop()


async def test_reading_waits_while_the_window_is_full_and_goes_on_with_acks(
    runtime, link, uploader
):
    # given a window of 8 bytes and 4-byte chunks
    options = dataclasses.replace(
        FAST, log_chunk_bytes=4, log_window_bytes=8, log_resend_seconds=60
    )
    manager = RuntimeJobManager(runtime, uploader=uploader, options=options)
    await manager.start(link)
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    # when 16 bytes come out and nothing is acknowledged
    runtime.output(7, 1, b"aaaabbbbccccdddd")
    await link.next_of("job.log", count=2)
    await asyncio.sleep(0.1)

    # then only the window went out
    assert [c["offset"] for c in link.of("job.log")] == [0, 4]

    # when the server acknowledges
    await manager.on_ack("log.ack", {"job_id": 7, "attempt": 1, "offset": 8})
    await link.next_of("job.log", count=4)

    # then the rest follows
    assert [(c["offset"], c["data"]) for c in link.of("job.log")] == [
        (0, "aaaa"),
        (4, "bbbb"),
        (8, "cccc"),
        (12, "dddd"),
    ]
    await manager.stop()


async def test_unacknowledged_log_is_sent_again_from_the_acknowledged_offset(
    manager, runtime, link
):
    # given two chunks sent, the server acknowledged only the first
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)
    runtime.output(7, 1, b"one\n")
    await link.next_of("job.log")
    await manager.on_ack("log.ack", {"job_id": 7, "attempt": 1, "offset": 4})
    runtime.output(7, 1, b"two\n")
    await link.next_of("job.log", count=2)

    # when no acknowledgement comes for log_resend_seconds
    resent = await link.next_of("job.log", count=3)

    # then the unacknowledged bytes go again, from the server's offset
    assert resent[2] == {"job_id": 7, "attempt": 1, "offset": 4, "data": "two\n"}

    # and not while disconnected
    link.is_connected = False
    count = len(link.of("job.log"))
    await asyncio.sleep(FAST.log_resend_seconds * 2)
    assert len(link.of("job.log")) == count


# --- usage --------------------------------------------------------------------------------


async def test_usage_reports_are_cumulative_with_a_growing_seq_and_the_tracked_peak(
    manager, runtime, link
):
    # given reports every 0.1 s of a GPU job
    link.usage_report_seconds = 0.1
    gpu_offer = offer()
    gpu_offer["limits"]["gpus"] = 2
    runtime.sample = UsageSample(cpu_seconds=1.5, memory_current_mb=300, memory_peak_mb=0)
    await manager.on_offer(gpu_offer)
    await link.next_of("job.usage")

    # when memory falls and CPU goes on
    runtime.sample = UsageSample(cpu_seconds=2.25, memory_current_mb=100, memory_peak_mb=0)
    reports = await link.until(
        lambda: [u for u in link.of("job.usage") if u["cpu_seconds"] == 2.25], "newer usage"
    )
    runtime.exit(7, 1, SUCCESS)
    await link.next_of("job.finished")

    # then
    usages = link.of("job.usage")
    assert [u["seq"] for u in usages] == list(range(1, len(usages) + 1))
    walls = [u["wall_seconds"] for u in usages]
    assert walls == sorted(walls)
    assert usages[0]["memory_peak_mb"] == 300
    assert reports[0]["memory_peak_mb"] == 300  # the peak is kept after memory fell
    assert reports[0]["memory_current_mb"] == 100
    for usage in usages:
        assert usage["gpu_seconds"] == pytest.approx(2 * usage["wall_seconds"], abs=0.002)
    assert usages[-1]["is_final"] is True
    assert usages[-1]["memory_current_mb"] == 0
    assert "is_final" not in usages[0]
    valid_on_the_wire(link)


async def test_the_seq_survives_an_agent_restart_through_the_state_file(runtime, link, uploader):
    # given a container from an earlier run whose last report was seq 7
    directory = runtime.work_root / "job-7-1"
    directory.mkdir(parents=True)
    cap = cap_from_offer(offer())
    state_write(directory, AttemptState(seq=7, memory_peak_mb=900, gpus=1, cap=cap))
    runtime.owned = [OwnedContainer(7, 1, "c-7-1", "running", "run")]
    runtime.attachable[(7, 1)] = 30.0
    link.usage_report_seconds = 0.05
    manager = RuntimeJobManager(runtime, uploader=uploader, options=FAST)
    await manager.start(link)

    # when the server keeps it
    await manager.on_resume([{"job_id": 7, "attempt": 1}], [])
    [usage] = await link.next_of("job.usage")

    # then
    assert usage["seq"] == 8
    assert usage["memory_peak_mb"] == 900
    assert usage["wall_seconds"] >= 30
    assert usage["gpu_seconds"] == pytest.approx(usage["wall_seconds"], abs=0.002)
    state = state_read(directory)
    assert state is not None
    assert state.seq >= 8
    await manager.stop()


async def test_a_restart_after_the_container_exited_reports_the_cpu_already_reported(
    runtime, link, uploader
):
    # given: the last report before the restart said 12.5 s of CPU; the container has no
    # cgroup left to read (the runtime's sample says 0) -- issue 11: the final report was
    # refused as counters_backwards
    directory = runtime.work_root / "job-7-1"
    directory.mkdir(parents=True)
    cap = cap_from_offer(offer())
    state_write(
        directory, AttemptState(seq=7, memory_peak_mb=900, gpus=1, cap=cap, cpu_seconds=12.5)
    )
    runtime.owned = [OwnedContainer(7, 1, "c-7-1", "running", "run")]
    runtime.attachable[(7, 1)] = 30.0
    runtime.sample = UsageSample(cpu_seconds=0.0, memory_current_mb=0, memory_peak_mb=0)
    link.usage_report_seconds = 0.05
    manager = RuntimeJobManager(runtime, uploader=uploader, options=FAST)
    await manager.start(link)

    # when
    await manager.on_resume([{"job_id": 7, "attempt": 1}], [])
    [usage] = await link.next_of("job.usage")

    # then: the counters carry on from what was reported, never backwards
    assert (usage["seq"], usage["cpu_seconds"]) == (8, 12.5)
    state = state_read(directory)
    assert state is not None
    assert state.cpu_seconds == 12.5
    await manager.stop()


async def test_a_restart_after_the_container_exited_reports_the_time_it_ran_not_since(
    runtime, link, uploader
):
    # given: a container that started 30 s ago, was last reported at 10 s of wall time and
    # 8 s of CPU, and exited after 12 s with 11 s of CPU (what the runtime reads back)
    directory = runtime.work_root / "job-7-1"
    directory.mkdir(parents=True)
    cap = cap_from_offer(offer())
    state_write(
        directory,
        AttemptState(
            seq=7, memory_peak_mb=900, gpus=1, cap=cap, cpu_seconds=8.0, wall_seconds=10.0
        ),
    )
    runtime.owned = [OwnedContainer(7, 1, "c-7-1", "exited", "run")]
    runtime.attachable[(7, 1)] = 30.0
    runtime.sample = UsageSample(11.0, 0, 0, wall_seconds=12.0)
    link.usage_report_seconds = 0.05
    manager = RuntimeJobManager(runtime, uploader=uploader, options=FAST)
    await manager.start(link)

    # when: it is kept, and its end read
    await manager.on_resume([{"job_id": 7, "attempt": 1}], [])
    [usage] = await link.next_of("job.usage")
    runtime.exit(7, 1, Outcome("succeeded", "exit code 0", 0))
    finished = await link.until(lambda: link.of("job.finished"), "job.finished")

    # then: the wall time is the 12 s it ran (not the 30 s since its start), the CPU the 11 s
    assert (usage["seq"], usage["cpu_seconds"], usage["wall_seconds"]) == (8, 11.0, 12.0)
    final = finished[-1]["usage"]
    assert (final["cpu_seconds"], final["wall_seconds"], final["gpu_seconds"]) == (11.0, 12.0, 12.0)
    state = state_read(directory)
    assert state is not None
    assert (state.cpu_seconds, state.wall_seconds) == (11.0, 12.0)
    await manager.stop()


async def test_a_failing_sample_does_not_end_metering(manager, runtime, link):
    # given a runtime whose first two samples fail
    link.usage_report_seconds = 0.05
    runtime.usage_failures = [RuntimeError("engine hiccup"), OSError("cgroup gone")]
    runtime.sample = UsageSample(cpu_seconds=0.5, memory_current_mb=64, memory_peak_mb=64)

    # when
    await manager.on_offer(offer())
    reports = await link.until(
        lambda: [u for u in link.of("job.usage") if u["cpu_seconds"] == 0.5], "usage"
    )

    # then
    assert reports[0]["memory_peak_mb"] == 64
    assert runtime.usage_failures == []


# --- the cost cap -------------------------------------------------------------------------


async def test_the_local_cap_stops_the_job_with_budget_exhausted(manager, runtime, link):
    # given: 1 GB reserved at 3,600,000,000 per GB-hour costs 1,000,000 per second, and the
    # cap leaves 1,500,000: the next second would pass it once 0.5 s are used
    capped = offer(
        max_cost_micros=2_000_000,
        charged_micros=500_000,
        rates={
            "cpu_core_hour_micros": 0,
            "memory_gb_hour_micros": 3_600_000_000,
            "gpu_hour_micros": 0,
        },
    )
    capped["limits"]["memory_mb"] = 1024
    assert cap_from_offer(capped).seconds_at_full_use == 1

    # when it runs
    await manager.on_offer(capped)
    [finished] = await link.next_of("job.finished")

    # then
    cancel = next(c for c in runtime.calls if c[0] == "cancel")
    assert cancel == ("cancel", 7, 1, 1, "budget_exhausted", BUDGET_REASON)
    assert (finished["status"], finished["reason"]) == ("budget_exhausted", BUDGET_REASON)
    assert 0.5 <= finished["usage"]["wall_seconds"] < 1.5


async def test_a_usage_ack_that_says_stop_ends_the_job_with_budget_exhausted(
    manager, runtime, link
):
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    await manager.on_ack("usage.ack", {"job_id": 7, "attempt": 1, "seq": 1, "stop": True})
    [finished] = await link.next_of("job.finished")

    assert (finished["status"], finished["reason"]) == ("budget_exhausted", SERVER_BUDGET_REASON)
    cancel = next(c for c in runtime.calls if c[0] == "cancel")
    assert cancel[3:5] == (1, "budget_exhausted")


async def test_a_usage_ack_without_stop_changes_nothing(manager, runtime, link):
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    await manager.on_ack("usage.ack", {"job_id": 7, "attempt": 1, "seq": 1, "stop": False})
    await asyncio.sleep(0.1)

    assert "cancel" not in runtime.names()
    assert link.of("job.finished") == []


# --- cancel -------------------------------------------------------------------------------


async def test_cancel_stops_the_container_after_the_grace_and_reports_cancelled(
    manager, runtime, link
):
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    await manager.on_cancel({"job_id": 7, "attempt": 1, "reason": "cancelled by the owner"})
    [finished] = await link.next_of("job.finished")

    assert ("cancel", 7, 1, 10, "cancelled", "cancelled by the owner") in runtime.calls
    assert (finished["status"], finished["reason"]) == ("cancelled", "cancelled by the owner")
    await ack_finished(manager, link)
    await until_done(manager)
    assert runtime.names()[-1] == "cleanup"


async def test_cancel_while_preparing_ends_the_install_and_never_starts(manager, runtime, link):
    # given an install that takes a while
    runtime.prepare_gate = __import__("threading").Event()
    await manager.on_offer(offer())
    await link.until(lambda: ("prepare", 7, 1) in runtime.calls)

    # when
    await manager.on_cancel({"job_id": 7, "attempt": 1, "reason": "cancelled by the owner"})
    [finished] = await link.next_of("job.finished")

    # then
    assert (finished["status"], finished["reason"]) == ("cancelled", "cancelled by the owner")
    assert "start" not in runtime.names()
    assert "kill" in runtime.names()


async def test_a_cancel_for_an_unknown_attempt_is_ignored(manager, runtime, link):
    await manager.on_cancel({"job_id": 99, "attempt": 1, "reason": "cancelled by the owner"})

    assert link.sent == []
    assert runtime.calls == []


async def test_a_stale_attempt_cancel_kills_without_reporting(manager, runtime, link):
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)
    sent = len(link.sent)

    await manager.on_cancel(
        {"job_id": 7, "attempt": 1, "reason": "stale attempt: superseded by attempt 2"}
    )
    await until_done(manager)
    await asyncio.sleep(0.05)

    assert "kill" in runtime.names()
    assert link.of("job.finished") == []
    assert link.types()[sent:] == []
    assert manager.running_jobs() == []


# --- restart and resume -------------------------------------------------------------------


async def test_start_reports_own_run_containers_and_removes_unfinished_installs(
    runtime, link, uploader
):
    # given containers left by an earlier run of this agent
    runtime.owned = [
        OwnedContainer(5, 1, "a", "running", "run"),
        OwnedContainer(6, 2, "b", "exited", "run"),
        OwnedContainer(8, 1, "c", "running", "install"),
    ]
    manager = RuntimeJobManager(runtime, uploader=uploader, options=FAST)

    # when
    await manager.start(link)

    # then
    assert manager.running_jobs() == [{"job_id": 5, "attempt": 1}, {"job_id": 6, "attempt": 2}]
    assert runtime.calls == [("kill", 8, 1)]
    assert link.sent == []


async def test_an_engine_that_cannot_list_containers_does_not_stop_the_agent(
    runtime, link, uploader
):
    runtime.list_own_failure = RuntimeError("Cannot connect to the Docker daemon")
    manager = RuntimeJobManager(runtime, uploader=uploader, options=FAST)

    await manager.start(link)

    assert manager.running_jobs() == []


async def test_resume_kills_what_the_server_drops_and_reattaches_what_it_keeps(
    runtime, link, uploader
):
    # given two containers from an earlier run; job 5 has written 10 bytes the server holds
    runtime.owned = [
        OwnedContainer(5, 1, "a", "running", "run"),
        OwnedContainer(6, 1, "b", "running", "run"),
    ]
    runtime.attachable[(5, 1)] = 12.0
    options = dataclasses.replace(FAST, log_chunk_bytes=4)
    manager = RuntimeJobManager(runtime, uploader=uploader, options=options)
    await manager.start(link)

    # when the welcome says keep 5, kill 6
    await manager.on_resume([{"job_id": 5, "attempt": 1}], [{"job_id": 6, "attempt": 1}])
    await link.until(lambda: ("kill", 6, 1) in runtime.calls, "the kill")
    [started] = await link.next_of("job.started")

    # then job 5 is running again; its log is read from the start
    assert started == {"job_id": 5, "attempt": 1, "phase": "running"}
    assert manager.running_jobs() == [{"job_id": 5, "attempt": 1}]
    runtime.output(5, 1, b"0123456789ABCDEF")
    [probe] = await link.next_of("job.log")
    await asyncio.sleep(0.05)
    # one probe chunk goes out until the server says how much it holds
    assert link.of("job.log") == [{"job_id": 5, "attempt": 1, "offset": 0, "data": "0123"}]
    assert probe["offset"] == 0

    # when the server acknowledges 10 bytes
    await manager.on_ack("log.ack", {"job_id": 5, "attempt": 1, "offset": 10})
    runtime.exit(5, 1, SUCCESS)
    await link.next_of("job.finished")

    # then only what it lacks follows
    assert [(c["offset"], c["data"]) for c in link.of("job.log")[1:]] == [(10, "ABCD"), (14, "EF")]
    assert ("attach", 6, 1) not in runtime.calls
    await manager.stop()


async def test_a_kept_attempt_whose_container_is_gone_is_dropped(runtime, link, uploader):
    runtime.owned = [OwnedContainer(5, 1, "a", "exited", "run")]
    manager = RuntimeJobManager(runtime, uploader=uploader, options=FAST)
    await manager.start(link)

    await manager.on_resume([{"job_id": 5, "attempt": 1}], [])
    await until_done(manager, (5, 1))

    assert manager.running_jobs() == []
    assert link.sent == []


async def test_a_held_attempt_the_welcome_kills_is_removed_without_a_report(manager, runtime, link):
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    await manager.on_resume([], [{"job_id": 7, "attempt": 1}])
    await link.until(lambda: ("kill", 7, 1) in runtime.calls)
    await asyncio.sleep(0.05)

    assert manager.running_jobs() == []
    assert link.of("job.finished") == []


async def test_stop_leaves_running_containers_alone(manager, runtime, link):
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    await manager.stop()

    assert runtime.names() == ["prepare", "start"]
    assert link.of("job.finished") == []
