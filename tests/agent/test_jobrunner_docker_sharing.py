"""Issue 12 on a real engine: agents sharing one Docker engine keep to their own containers,
a stale attempt's container is gone within seconds, and a host fault (the runner image
missing, the host's package index unreachable) is the host's, with readiness saying why.

Needs a Docker engine and the runner image (`make runner-image`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from agent.jobrunner.runtime_manager import NOT_READY_REASON, Capacity, RuntimeJobManager
from agent.protocol import STALE_ATTEMPT_REASON_PREFIX
from agent.runtime import DockerRuntime
from agent.runtime.reasons import HOST_INDEX_REASON, HOST_PREPARE_REASON
from tests.agent.jobrunner_fakes import FAST, FakeLink
from tests.agent.test_jobrunner_docker import (
    RecordingUploader,
    acknowledge_until_done,
    script_offer,
)
from tests.agent.test_runtime_docker import settings_for, spec_for

pytestmark = pytest.mark.docker

# An image that exists nowhere: its registry refuses connections at once.
MISSING_IMAGE = "127.0.0.1:9/communipute/no-such-runner:missing"


def _install() -> str:
    return f"install-{uuid.uuid4().hex[:12]}"


def agent_runtime(root: Path, marker: str, install_id: str, server_id: str, **overrides):
    settings = settings_for(
        root, agent_marker=marker, install_id=install_id, server_id=server_id, **overrides
    )
    return DockerRuntime(settings)


async def manager_for(runtime, link, slots=2) -> RuntimeJobManager:
    manager = RuntimeJobManager(
        runtime, uploader=RecordingUploader(), capacity=Capacity(slots=slots), options=FAST
    )
    await manager.start(link)
    return manager


def running_ids(runtime: DockerRuntime) -> set[str]:
    return {owned.container_id for owned in runtime.list_own() if owned.state == "running"}


def remove_all(*runtimes: DockerRuntime) -> None:
    for runtime in runtimes:
        for owned in runtime.list_own():
            runtime.kill(owned.job_id, owned.attempt)


@pytest.mark.parametrize("other", ["another install", "another server"])
async def test_two_agents_with_the_same_host_id_on_one_engine_never_touch_each_other(
    tmp_path, other
):
    # given: two agents with host id 77 on this engine — a second installation, or the same
    # installation's copy working for a second server — both running job 1 attempt 1 at once
    marker = f"77-{uuid.uuid4().hex[:6]}"  # the same for both; unique to this test run
    install = _install()
    first_owner = (install, "server-one")
    second_owner = (_install(), "server-one") if other == "another install" else (install, "s2")
    first = agent_runtime(tmp_path / "a", marker, *first_owner)
    second = agent_runtime(tmp_path / "b", marker, *second_owner)
    links = FakeLink(), FakeLink()
    managers = [await manager_for(first, links[0]), await manager_for(second, links[1])]
    sleeper = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
    short = "import time\nprint('up', flush=True)\ntime.sleep(3)\nprint('done')\n"
    try:
        await managers[0].on_offer(script_offer(sleeper, job_id=1))
        await managers[1].on_offer(script_offer(short, job_id=1))
        for link in links:
            await link.until(lambda link=link: link.of("job.log"), "both running")

        # then each lists only its own container
        [mine] = first.list_own()
        [theirs] = second.list_own()
        assert mine.container_id != theirs.container_id
        assert (mine.job_id, mine.attempt) == (theirs.job_id, theirs.attempt) == (1, 1)

        # when: the first agent restarts, and the server kills what it finds (its job 1)
        await managers[0].stop()
        restarted_runtime = agent_runtime(tmp_path / "a", marker, *first_owner)
        restarted_link = FakeLink()
        restarted = await manager_for(restarted_runtime, restarted_link)
        assert restarted.running_jobs() == [{"job_id": 1, "attempt": 1}]
        await restarted.on_resume([], [{"job_id": 1, "attempt": 1}])
        await restarted_link.until(lambda: first.list_own() == [], "the first agent's kill")

        # then: the second agent's job was never touched and ends as it should
        finished = await acknowledge_until_done(managers[1], links[1], (1, 1))
        assert (finished["status"], finished["exit_code"]) == ("succeeded", 0)
        assert second.list_own() == []
        await restarted.stop()
    finally:
        for manager in managers:
            await manager.stop()
        remove_all(first, second)


@pytest.mark.parametrize("how", ["job.cancel", "welcome kill_jobs"])
async def test_a_stale_attempts_container_is_stopped_within_seconds(tmp_path, how):
    # given a running sleeper
    runtime = agent_runtime(tmp_path, f"h-{uuid.uuid4().hex[:6]}", _install(), "s1")
    link = FakeLink()
    manager = await manager_for(runtime, link)
    try:
        await manager.on_offer(
            script_offer("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
        )
        await link.until(lambda: link.of("job.log"), "the first output")
        [container] = running_ids(runtime)
        sent = len(link.sent)

        # when the server says the attempt is no longer its
        started = time.monotonic()
        if how == "job.cancel":
            reason = f"{STALE_ATTEMPT_REASON_PREFIX}: lost while the host was away"
            await manager.on_cancel({"job_id": 1, "attempt": 1, "reason": reason})
        else:
            await manager.on_resume([], [{"job_id": 1, "attempt": 1}])
        await link.until(lambda: runtime.list_own() == [], "the container's removal")  # <= 5 s
        seconds = time.monotonic() - started

        # then: gone (not stopped with a grace: removed), and nothing reported
        print(f"stale attempt's container removed {seconds:.2f} s after the {how}")
        assert runtime.list_own() == []
        assert seconds < 5
        assert runtime.client.containers.list(all=True, filters={"id": container}) == []
        await asyncio.sleep(0.1)
        assert [kind for kind, _, _ in link.sent[sent:]] == []
        assert manager.running_jobs() == []
    finally:
        await manager.stop()
        remove_all(runtime)


async def test_a_missing_runner_image_makes_the_host_not_ready_and_its_jobs_host_faults(
    tmp_path,
):
    # given an agent whose runner image is missing and can't be pulled
    runtime = agent_runtime(
        tmp_path, f"h-{uuid.uuid4().hex[:6]}", _install(), "s1", image=MISSING_IMAGE
    )
    link = FakeLink()
    manager = await manager_for(runtime, link)
    try:
        # then: not ready, and the owner reads why
        readiness = manager.readiness()
        assert readiness["ready"] is False
        assert readiness["isolation"] == "docker"
        assert (
            f"the runner image {MISSING_IMAGE} is missing and cannot be pulled"
            in (readiness["reason"])
        )
        await manager.on_offer(script_offer("print(1)\n", job_id=1))
        assert link.of("job.reject") == [
            {"job_id": 1, "attempt": 1, "reason": NOT_READY_REASON, "code": "host_fault"}
        ]

        # when a job gets through anyway (the image vanished after the last check)
        manager.not_ready_reason = ""
        await manager.on_offer(script_offer("print(1)\n", job_id=2))
        [finished] = await link.next_of("job.finished")

        # then: the host's fault, a sentence for the renter, the engine's words apart
        assert (finished["status"], finished["fault"]) == ("failed", "host")
        assert finished["reason"] == HOST_PREPARE_REASON
        assert "http" not in finished["reason"]
        assert "connection refused" in finished["detail"]
        await link.until(lambda: not manager.readiness()["ready"], "not ready again")
    finally:
        await manager.stop()
        remove_all(runtime)


def test_an_unreachable_package_index_is_the_hosts_fault(tmp_path):
    # given a host whose configured index refuses connections
    runtime = agent_runtime(
        tmp_path,
        f"h-{uuid.uuid4().hex[:6]}",
        _install(),
        "s1",
        pip_index_url="http://127.0.0.1:9/simple",
    )
    try:
        # when
        prepared = runtime.prepare(spec_for("print(1)\n", requirements=("six",)))

        # then
        assert prepared.failure is not None
        assert (prepared.failure.status, prepared.failure.fault) == ("failed", "host")
        assert prepared.failure.reason == HOST_INDEX_REASON
        assert "connection" in prepared.failure.detail.lower()
        assert "No matching distribution found for six" in prepared.failure.detail
        assert runtime.list_own() == []
    finally:
        remove_all(runtime)


def test_readiness_of_a_working_engine(tmp_path):
    runtime = agent_runtime(tmp_path, f"h-{uuid.uuid4().hex[:6]}", _install(), "s1")

    assert runtime.readiness_check() == ""


async def test_a_multi_slot_host_runs_its_jobs_side_by_side_in_their_own_containers(tmp_path):
    # given a host of 3 slots and 4 jobs that each run 2 s
    runtime = agent_runtime(tmp_path, f"h-{uuid.uuid4().hex[:6]}", _install(), "s1")
    link = FakeLink()
    manager = await manager_for(runtime, link, slots=3)
    source = "import time\nprint('up', flush=True)\ntime.sleep(2)\n"
    try:
        # when
        for job_id in (1, 2, 3, 4):
            await manager.on_offer(script_offer(source, job_id=job_id))

        # then: three run at once, each in its own container; the fourth is busy
        await link.until(lambda: len(running_ids(runtime)) == 3, "three containers running")
        assert [r["code"] for r in link.of("job.reject")] == ["busy"]
        assert [r["job_id"] for r in link.of("job.reject")] == [4]

        def statuses():
            found = {f["job_id"]: f["status"] for f in link.of("job.finished")}
            return found if len(found) == 3 else None

        # (job.finished is sent again until acknowledged: one status per job)
        assert await link.until(statuses, "three finishes") == {
            1: "succeeded",
            2: "succeeded",
            3: "succeeded",
        }
        for kind, _, message_id in list(link.sent):
            if kind == "job.finished":
                await manager.on_ack("ack", {"ack_id": message_id})
        await link.until(lambda: runtime.list_own() == [], "every container removed")
        # (each attempt is let go once its clean-up thread has also removed its directory)
        await link.until(lambda: manager.running_jobs() == [], "every attempt let go")
    finally:
        await manager.stop()
        remove_all(runtime)
