"""The job manager with the demo-only process runtime (no isolation, no Docker needed)."""

from __future__ import annotations

import base64

from agent.jobrunner.runtime_manager import RuntimeJobManager
from agent.runtime import ProcessRuntime, RuntimeSettings
from tests.agent.jobrunner_fakes import FAST, FakeLink, log_as_stored, offer


class RecordingUploader:
    def __init__(self):
        self.files = {}

    def __call__(self, job_id, attempt, output):
        self.files[output.name] = output.path.read_bytes()


def script(source: str) -> list[dict[str, str]]:
    return [{"path": "main.py", "content_b64": base64.b64encode(source.encode()).decode()}]


async def test_a_job_runs_as_a_process_with_its_log_outputs_and_exit_code(tmp_path):
    # given
    runtime = ProcessRuntime(RuntimeSettings(work_root=tmp_path / "w"), allow_unisolated=True)
    link, uploader = FakeLink(), RecordingUploader()
    manager = RuntimeJobManager(runtime, uploader=uploader, options=FAST)
    await manager.start(link)
    source = (
        "import os, sys\n"
        "print('out')\n"
        "print('err', file=sys.stderr)\n"
        "open(os.path.join(os.environ['COMMUNIPUTE_OUTPUTS'], 'r.txt'), 'w').write('x')\n"
        "sys.exit(4)\n"
    )

    # when
    await manager.on_offer(offer(files=script(source)))
    [finished] = await link.next_of("job.finished")

    # then
    assert (finished["status"], finished["reason"], finished["exit_code"]) == (
        "failed",
        "exit code 4",
        4,
    )
    assert sorted(log_as_stored(link.of("job.log")).splitlines()) == ["err", "out"]
    assert uploader.files == {"r.txt": b"x"}
    await manager.on_ack("ack", {"ack_id": link.id_of_last("job.finished")})
    await link.until(lambda: not manager.attempts, "the cleanup")
    assert not (tmp_path / "w" / "job-7-1").exists()
    await manager.stop()
