"""The unisolated process runtime of the local demo: it must be asked for explicitly."""

import logging
import os
import time

import pytest

from agent.runtime import JobSpec, Outcome, ProcessRuntime, RuntimeSettings
from agent.runtime.process_runtime import ProcessRuntimeRefused


@pytest.fixture
def runtime(tmp_path):
    return ProcessRuntime(RuntimeSettings(work_root=tmp_path), allow_unisolated=True)


def _run(runtime, source, **overrides):
    spec = JobSpec(
        job_id=1, attempt=1, files={"main.py": source}, entrypoint="main.py", **overrides
    )
    handle = runtime.start(runtime.prepare(spec))
    return runtime, handle


def test_it_refuses_to_exist_unless_asked_for_explicitly(tmp_path):
    with pytest.raises(ProcessRuntimeRefused, match="isolates nothing"):
        ProcessRuntime(RuntimeSettings(work_root=tmp_path))
    with pytest.raises(ProcessRuntimeRefused):
        ProcessRuntime(RuntimeSettings(work_root=tmp_path), allow_unisolated=1)  # type: ignore[arg-type]

    assert list(tmp_path.iterdir()) == []


def test_it_warns_loudly_that_it_isolates_nothing(tmp_path, caplog):
    # when
    with caplog.at_level(logging.WARNING):
        ProcessRuntime(RuntimeSettings(work_root=tmp_path), allow_unisolated=True)

    # then
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("ProcessRuntime ISOLATES NOTHING: jobs run as ")


def test_hello_world_with_logs_and_outputs(runtime):
    # given
    source = (
        b"import os, pathlib\n"
        b"print('hello')\n"
        b"pathlib.Path(os.environ['COMMUNIPUTE_OUTPUTS'], 'r.txt').write_text('ok')\n"
    )

    # when
    runtime, handle = _run(runtime, source)
    logs = b"".join(runtime.logs(handle))
    outcome = runtime.wait(handle)

    # then
    assert logs == b"hello\n"
    assert outcome == Outcome("succeeded", "exit code 0", 0)
    assert [(f.name, f.size) for f in runtime.collect_outputs(handle)] == [("r.txt", 2)]
    runtime.cleanup(handle)
    assert not handle.attempt_dir.exists()


def test_a_sleeper_is_killed_at_its_timeout(runtime):
    runtime, handle = _run(runtime, b"import time\ntime.sleep(30)\n", timeout_seconds=1)

    assert runtime.wait(handle) == Outcome("timed_out", "timed out after 1 seconds", -9)


def test_cancel_sends_sigterm_to_the_script(runtime):
    # given
    source = b"import time\nprint('up', flush=True)\ntime.sleep(30)\n"
    runtime, handle = _run(runtime, source)
    logs = runtime.logs(handle)
    seen = b""
    while not seen.endswith(b"up\n"):  # print may write the text and the newline apart
        seen += next(logs)
    started = time.monotonic()

    # when
    runtime.cancel(handle, 5, reason="cancelled by the renter")

    # then
    assert runtime.wait(handle) == Outcome("cancelled", "cancelled by the renter", -15)
    assert time.monotonic() - started < 5


def test_an_unreachable_index_is_the_hosts_fault_and_readiness_is_unconditional(
    runtime, monkeypatch
):
    # given: pip of this host points at an index that refuses connections
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(name)  # this machine's own pip settings aside (find-links ...)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "1")  # pip says "Retrying ... connection" once
    spec = JobSpec(
        job_id=1, attempt=1, files={"main.py": b"print(1)\n"}, entrypoint="main.py",
        requirements=("six",),
    )  # fmt: skip

    # when
    prepared = runtime.prepare(spec)

    # then
    assert prepared.failure is not None
    assert (prepared.failure.fault, prepared.failure.reason) == (
        "host",
        "the host could not reach its package index",
    )
    assert "No matching distribution found for six" in prepared.failure.detail
    assert (runtime.readiness_check(), runtime.isolation) == ("", "none")
