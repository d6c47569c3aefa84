"""The job manager with the real Docker runtime, against a recording link (no server).

Needs a Docker engine and the runner image (`make runner-image`).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from agent.jobrunner.runtime_manager import RuntimeJobManager
from agent.runtime import DockerRuntime
from tests.agent.jobrunner_fakes import FAST, FakeLink, log_as_stored, offer
from tests.agent.test_runtime_docker import settings_for

pytestmark = pytest.mark.docker


class RecordingUploader:
    def __init__(self):
        self.files: dict[str, bytes] = {}

    def __call__(self, job_id, attempt, output):
        self.files[output.name] = output.path.read_bytes()


def script_offer(source: str, job_id: int = 1, **overrides) -> Any:
    files = [{"path": "main.py", "content_b64": base64.b64encode(source.encode()).decode()}]
    given = offer(job_id=job_id, files=files, **overrides)
    given["limits"].update(memory_mb=128, timeout_seconds=60)
    return given


@pytest.fixture
def docker_runtime(tmp_path):
    runtime = DockerRuntime(settings_for(tmp_path / "jobs"))
    yield runtime
    for owned in runtime.list_own():
        runtime.kill(owned.job_id, owned.attempt)


async def manager_for(runtime, link, uploader=None) -> RuntimeJobManager:
    manager = RuntimeJobManager(runtime, uploader=uploader or RecordingUploader(), options=FAST)
    await manager.start(link)
    return manager


async def acknowledge_until_done(manager, link, key):
    """Play the server: acknowledge every log chunk and the finish."""
    finished = (await link.next_of("job.finished"))[0]
    for chunk in link.of("job.log"):
        end = chunk["offset"] + len(chunk["data"].encode())
        await manager.on_ack("log.ack", {**chunk, "offset": end})
    await manager.on_ack("ack", {"ack_id": link.id_of_last("job.finished")})
    for _ in range(500):
        if key not in manager.attempts:
            break
        await asyncio.sleep(0.02)
    return finished


async def test_a_script_runs_in_docker_to_success_with_logs_usage_and_outputs(docker_runtime):
    # given
    link, uploader = FakeLink(), RecordingUploader()
    link.usage_report_seconds = 0.2
    manager = await manager_for(docker_runtime, link, uploader)
    source = (
        "import time\n"
        "print('hello from the sandbox', flush=True)\n"
        # CPU time, not wall time: on a busy machine 0.6 s of wall time may hold far less CPU
        "end = time.process_time() + 0.6\n"
        "while time.process_time() < end: pass\n"
        "open('/outputs/answer.txt', 'w').write('42')\n"
    )

    # when
    await manager.on_offer(script_offer(source))
    finished = await acknowledge_until_done(manager, link, (1, 1))

    # then
    assert (finished["status"], finished["reason"], finished["exit_code"]) == (
        "succeeded",
        "exit code 0",
        0,
    )
    assert log_as_stored(link.of("job.log")) == "hello from the sandbox\n"
    assert uploader.files == {"answer.txt": b"42"}
    assert [(o["name"], o["size"]) for o in finished["outputs"]] == [("answer.txt", 2)]
    usage = finished["usage"]
    assert usage["is_final"] is True
    assert usage["cpu_seconds"] >= 0.3
    assert usage["wall_seconds"] >= usage["cpu_seconds"] * 0.9
    assert usage["memory_peak_mb"] > 0
    seqs = [u["seq"] for u in link.of("job.usage")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert docker_runtime.list_own() == []
    assert manager.running_jobs() == []
    await manager.stop()


async def test_cancel_stops_a_running_container(docker_runtime):
    # given a sleeper
    link = FakeLink()
    manager = await manager_for(docker_runtime, link)
    await manager.on_offer(script_offer("import time\nprint('up', flush=True)\ntime.sleep(60)\n"))
    await link.until(lambda: link.of("job.log"), "the first output")

    # when
    await manager.on_cancel({"job_id": 1, "attempt": 1, "reason": "cancelled by the owner"})
    finished = await acknowledge_until_done(manager, link, (1, 1))

    # then
    assert (finished["status"], finished["reason"]) == ("cancelled", "cancelled by the owner")
    assert finished["usage"]["wall_seconds"] < 30
    assert docker_runtime.list_own() == []
    await manager.stop()


async def test_the_local_cap_stops_a_container_with_budget_exhausted(docker_runtime):
    # given rates at which the cap lasts about a second
    link = FakeLink()
    manager = await manager_for(docker_runtime, link)
    capped = script_offer(
        "import time\ntime.sleep(60)\n",
        max_cost_micros=1_500_000,
        rates={
            "cpu_core_hour_micros": 0,
            "memory_gb_hour_micros": 28_800_000_000,
            "gpu_hour_micros": 0,
        },
    )

    # when (128 MB at that rate: 1,000,000 per second)
    await manager.on_offer(capped)
    finished = await acknowledge_until_done(manager, link, (1, 1))

    # then
    assert finished["status"] == "budget_exhausted"
    assert finished["usage"]["wall_seconds"] < 5
    await manager.stop()


async def test_a_restarted_agent_reattaches_and_sends_only_the_log_the_server_lacks(
    docker_runtime, tmp_path
):
    # given an agent running a job that prints a line every 0.2 s
    link = FakeLink()
    first = await manager_for(docker_runtime, link)
    source = (
        "import time\n"
        "for i in range(15):\n"
        "    print(f'line {i}', flush=True)\n"
        "    time.sleep(0.2)\n"
    )
    await first.on_offer(script_offer(source))
    await link.until(lambda: len(link.of("job.log")) >= 2, "two lines")
    held = link.of("job.log")[0]
    held_end = held["offset"] + len(held["data"].encode())

    # when the agent exits (the container keeps running) and a new one starts
    await first.stop()
    again = FakeLink()
    second = await manager_for(DockerRuntime(docker_runtime.settings), again)

    # then it reports the container and, told to keep it, carries on from the server's offset
    assert second.running_jobs() == [{"job_id": 1, "attempt": 1}]
    await second.on_resume([{"job_id": 1, "attempt": 1}], [])
    [probe] = await again.next_of("job.log")
    assert probe["offset"] == 0
    await second.on_ack("log.ack", {"job_id": 1, "attempt": 1, "offset": held_end})
    finished = await acknowledge_until_done(second, again, (1, 1))

    assert finished["status"] == "succeeded"
    later = again.of("job.log")[1:]
    assert later[0]["offset"] == held_end
    text = log_as_stored([held, *later])
    assert text == "".join(f"line {i}\n" for i in range(15))
    assert [s["phase"] for s in again.of("job.started")] == ["running"]
    assert docker_runtime.list_own() == []
    await second.stop()
