"""Several jobs at once, host faults and readiness: the job manager against a scripted runtime
(no Docker). What a host can't take now is ``busy``, what it can never take ``refused``, and
while its runtime is not ready every offer is a ``host_fault``; a failure of the engine ends
the attempt as the host's fault, with a sentence for the renter and the engine's words apart.
"""

from __future__ import annotations

import dataclasses
import errno
import threading

import pytest

from agent.jobrunner.runtime_manager import (
    AT_CAPACITY_REASON,
    NOT_READY_REASON,
    Capacity,
    RuntimeJobManager,
)
from agent.protocol import AGENT_MESSAGES, decode, encode
from agent.runtime.reasons import (
    HOST_DISK_REASON,
    HOST_INDEX_REASON,
    HOST_LOST_REASON,
    HOST_PREPARE_REASON,
    HOST_START_REASON,
)
from agent.runtime.types import Outcome, host_fault
from tests.agent.jobrunner_fakes import FAST, FakeLink, FakeRuntime, FakeUploader, offer

SUCCESS = Outcome("succeeded", "exit code 0", 0)


class EngineError(Exception):
    """Stands in for docker.errors.APIError (the job manager knows no Docker)."""


@pytest.fixture
def runtime(tmp_path):
    return FakeRuntime(tmp_path / "work")


@pytest.fixture
def link():
    return FakeLink()


async def manager_for(runtime, link, capacity: Capacity, **options) -> RuntimeJobManager:
    manager = RuntimeJobManager(
        runtime,
        uploader=FakeUploader(),
        capacity=capacity,
        options=dataclasses.replace(FAST, **options),
    )
    await manager.start(link)
    return manager


def sized(job_id: int, cpus: float = 1.0, memory_mb: int = 512, gpus: int = 0):
    return offer(
        job_id=job_id,
        limits={
            "cpus": cpus,
            "memory_mb": memory_mb,
            "gpus": gpus,
            "timeout_seconds": 600,
            "allow_network": False,
        },
    )


def rejects(link: FakeLink) -> dict[int, tuple[str, str]]:
    return {r["job_id"]: (r["code"], r["reason"]) for r in link.of("job.reject")}


def valid_on_the_wire(link: FakeLink) -> None:
    for kind, data, message_id in link.sent:
        decode(encode(kind, data, message_id), AGENT_MESSAGES)


async def ack_finished(manager, link, count=1):
    await link.next_of("job.finished", count)
    await manager.on_ack("ack", {"ack_id": link.id_of_last("job.finished")})


# --- several jobs at once -----------------------------------------------------------------


async def test_a_multi_slot_host_runs_jobs_side_by_side_and_says_busy_when_full(runtime, link):
    # given a host of 4 slots, 8 cores and 8 GB
    manager = await manager_for(runtime, link, Capacity(slots=4, cpus=8, memory_mb=8192, gpus=0))

    # when five one-core jobs come
    for job_id in range(1, 6):
        await manager.on_offer(sized(job_id))
    await link.until(lambda: sum(c[0] == "start" for c in runtime.calls) == 4, "four starts")

    # then four run at once, the fifth is busy (not refused)
    assert [a["job_id"] for a in link.of("job.accept")] == [1, 2, 3, 4]
    assert rejects(link) == {5: ("busy", AT_CAPACITY_REASON)}
    assert manager.slots_used() == 4
    assert manager.in_use().cpus == 4

    # when one ends, the next offer fits again
    runtime.exit(2, 1, SUCCESS)
    await link.next_of("job.finished")
    await manager.on_offer(sized(6))

    # then
    assert [a["job_id"] for a in link.of("job.accept")] == [1, 2, 3, 4, 6]
    valid_on_the_wire(link)
    await manager.stop()


@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        ({"cpus": 3}, {"cpus": 2}, "busy: 1 of 4 cores free"),
        ({"memory_mb": 3072}, {"memory_mb": 2048}, "busy: 1024 MB of memory free"),
        ({"gpus": 1}, {"gpus": 1}, "busy: 0 GPUs free"),
    ],
)
async def test_an_offer_that_fits_the_host_but_not_what_is_free_now_is_busy(
    runtime, link, first, second, why
):
    # given 4 cores, 4 GB and one GPU, with a job holding part of them
    manager = await manager_for(runtime, link, Capacity(slots=8, cpus=4, memory_mb=4096, gpus=1))
    await manager.on_offer(sized(1, **first))

    # when
    await manager.on_offer(sized(2, **second))

    # then
    assert rejects(link) == {2: ("busy", why)}
    assert [a["job_id"] for a in link.of("job.accept")] == [1]
    await manager.stop()


@pytest.mark.parametrize(
    ("limits", "why"),
    [
        ({"cpus": 8}, "the job needs 8 cores; this host has 4"),
        ({"memory_mb": 8192}, "the job needs 8192 MB of memory; this host has 4096"),
        ({"gpus": 1}, "the job needs 1 GPUs; this host has 0"),
    ],
)
async def test_an_offer_bigger_than_the_whole_host_is_refused(runtime, link, limits, why):
    manager = await manager_for(runtime, link, Capacity(slots=2, cpus=4, memory_mb=4096, gpus=0))

    await manager.on_offer(sized(1, **limits))

    assert rejects(link) == {1: ("refused", why)}
    assert runtime.calls == []
    await manager.stop()


async def test_slots_and_isolation_are_what_the_manager_reports(runtime, link):
    manager = await manager_for(runtime, link, Capacity(slots=6))

    assert manager.slots() == 6
    assert manager.readiness() == {"ready": True, "reason": "", "isolation": "docker"}
    await manager.stop()


# --- readiness ----------------------------------------------------------------------------


async def test_a_host_that_is_not_ready_rejects_offers_as_its_own_fault(runtime, link):
    # given a runtime whose image is missing
    runtime.not_ready = "the runner image img:1 is missing and cannot be pulled: 404"
    manager = await manager_for(runtime, link, Capacity(slots=2))

    # when
    await manager.on_offer(offer())

    # then: the renter reads a sentence; the owner reads the engine's words in readiness
    assert rejects(link) == {7: ("host_fault", NOT_READY_REASON)}
    assert manager.readiness() == {
        "ready": False,
        "reason": "the runner image img:1 is missing and cannot be pulled: 404",
        "isolation": "docker",
    }
    assert runtime.calls == []
    await manager.stop()


async def test_readiness_is_checked_again_periodically_and_recovers(runtime, link):
    # given a host that was not ready at start
    runtime.not_ready = "the Docker engine does not answer"
    manager = await manager_for(runtime, link, Capacity(slots=1), readiness_seconds=0.05)
    assert manager.readiness()["ready"] is False

    # when the engine comes back
    runtime.not_ready = ""
    await link.until(lambda: manager.readiness()["ready"], "ready again")

    # then offers are taken again
    await manager.on_offer(offer())
    assert link.of("job.accept") == [{"job_id": 7, "attempt": 1}]
    await manager.stop()


async def test_a_slow_first_check_does_not_hold_up_the_start(runtime, link, monkeypatch):
    # given a check that hangs (pulling a missing image, say)
    monkeypatch.setattr("agent.jobrunner.runtime_manager.START_READINESS_TIMEOUT_SECONDS", 0.1)
    runtime.readiness_gate = threading.Event()

    # when
    manager = await manager_for(runtime, link, Capacity(slots=1), readiness_seconds=3600)

    # then: started, not ready meanwhile, and ready once the check answers (no hour's wait)
    assert manager.readiness()["ready"] is False
    assert "did not answer in 0.1 s" in manager.readiness()["reason"]
    runtime.readiness_gate.set()
    await link.until(lambda: manager.readiness()["ready"], "ready")
    await manager.stop()


async def test_a_host_fault_checks_readiness_at_once(runtime, link):
    # given: checks an hour apart, and an engine that fails to start containers
    manager = await manager_for(runtime, link, Capacity(slots=2), readiness_seconds=3600)
    checks = runtime.readiness_checks
    runtime.start_error = EngineError("500 Server Error: OCI runtime create failed")
    runtime.not_ready = "the Docker engine does not answer"

    # when
    await manager.on_offer(offer())
    await link.next_of("job.finished")

    # then the manager checked again without waiting an hour, and now says not ready
    await link.until(lambda: runtime.readiness_checks > checks, "a new check")
    await link.until(lambda: not manager.readiness()["ready"], "not ready")
    await manager.on_offer(offer(job_id=8))
    assert rejects(link)[8][0] == "host_fault"
    await manager.stop()


# --- host faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "error", "reason"),
    [
        (
            "prepare_error",
            EngineError("404 Client Error: No such image: img:1"),
            HOST_PREPARE_REASON,
        ),
        ("prepare_error", OSError(errno.ENOSPC, "No space left on device"), HOST_DISK_REASON),
        ("start_error", EngineError("500 Server Error for http+docker://x"), HOST_START_REASON),
    ],
)
async def test_an_engine_failure_is_the_hosts_fault_with_a_sentence_for_the_renter(
    runtime, link, where, error, reason
):
    # given
    setattr(runtime, where, error)
    manager = await manager_for(runtime, link, Capacity(slots=1))

    # when
    await manager.on_offer(offer())
    [finished] = await link.next_of("job.finished")

    # then
    assert finished["status"] == "failed"
    assert finished["fault"] == "host"
    assert finished["reason"] == reason
    assert str(error) not in finished["reason"]  # no raw engine error for the renter
    assert str(error) in finished["detail"]
    assert link.of("job.log") == []
    valid_on_the_wire(link)
    await ack_finished(manager, link)
    await manager.stop()


async def test_an_engine_that_loses_the_container_is_the_hosts_fault(runtime, link):
    manager = await manager_for(runtime, link, Capacity(slots=1))
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    runtime.wait_error = EngineError("409 Client Error: container is marked for removal")
    runtime.exit(7, 1, SUCCESS)  # ends the log stream
    [finished] = await link.next_of("job.finished")

    assert (finished["status"], finished["fault"], finished["reason"]) == (
        "failed",
        "host",
        HOST_LOST_REASON,
    )
    assert "marked for removal" in finished["detail"]
    await manager.stop()


async def test_an_unreachable_index_is_the_hosts_fault_and_its_pip_output_stays_private(
    runtime, link
):
    # given: the runtime found the host's index unreachable (agent/runtime/reasons.py)
    runtime.prepare_failure = host_fault(HOST_INDEX_REASON, "Failed to establish a new connection")
    runtime.install_log = b"WARNING: Retrying ... https://pypi.internal.example/simple/six/\n"
    manager = await manager_for(runtime, link, Capacity(slots=1))

    # when
    await manager.on_offer(offer(requirements=["six"]))
    [finished] = await link.next_of("job.finished")

    # then
    assert (finished["fault"], finished["reason"]) == ("host", HOST_INDEX_REASON)
    assert finished["detail"] == "Failed to establish a new connection"
    assert link.of("job.log") == []  # the host's index is not the renter's business
    await manager.stop()


async def test_the_renters_own_failures_carry_no_fault(runtime, link):
    manager = await manager_for(runtime, link, Capacity(slots=1))
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls)

    runtime.exit(7, 1, Outcome("failed", "out of memory (limit 512 MB)", 137))
    [finished] = await link.next_of("job.finished")

    assert finished["reason"] == "out of memory (limit 512 MB)"
    assert "fault" not in finished
    assert "detail" not in finished
    await manager.stop()


# --- a lost attempt -----------------------------------------------------------------------


async def test_a_stale_cancel_during_the_start_removes_the_container_it_made(runtime, link):
    # given a container being created when the server says the attempt is stale
    runtime.start_gate = threading.Event()
    manager = await manager_for(runtime, link, Capacity(slots=1))
    await manager.on_offer(offer())
    await link.until(lambda: ("start", 7, 1) in runtime.calls, "the start")

    # when
    await manager.on_cancel({"job_id": 7, "attempt": 1, "reason": "stale attempt: lost"})
    await link.until(lambda: ("kill", 7, 1) in runtime.calls, "the kill")
    runtime.start_gate.set()  # the engine finishes creating it only now

    # then the container is removed as soon as it exists, and nothing is reported
    await link.until(lambda: runtime.names().count("kill") == 2, "the second kill")
    assert runtime.started == set()
    assert [s["phase"] for s in link.of("job.started")] == ["preparing"]
    assert link.of("job.finished") == []
    assert manager.running_jobs() == []
    await manager.stop()


async def test_a_stale_attempt_frees_its_slot_at_once(runtime, link):
    manager = await manager_for(runtime, link, Capacity(slots=1))
    await manager.on_offer(offer(job_id=1))
    await link.until(lambda: ("start", 1, 1) in runtime.calls)

    await manager.on_resume([], [{"job_id": 1, "attempt": 1}])
    await link.until(lambda: ("kill", 1, 1) in runtime.calls)
    await manager.on_offer(offer(job_id=2))

    assert [a["job_id"] for a in link.of("job.accept")] == [1, 2]
    await link.until(lambda: runtime.started == {(2, 1)}, "only job 2 running")
    await manager.stop()
