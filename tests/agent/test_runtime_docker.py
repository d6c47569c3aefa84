"""The Docker runtime against a real engine and the runner image (`make runner-image`).

The hostile suite is in test_runtime_hostile.py; it shares the helpers of this module.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.runtime import DockerRuntime, Handle, JobSpec, Outcome, OwnedContainer, RuntimeSettings
from agent.runtime.docker_runtime import run_seconds_of
from agent.runtime.hardening import env_key, wheelhouse_name

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("COMMUNIPUTE_RUNNER_IMAGE", "communipute/runner:latest")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def settings_for(work_root: Path, **overrides) -> RuntimeSettings:
    fields: dict[str, Any] = {
        "work_root": work_root,
        "image": IMAGE,
        # A marker per runtime: tests never touch containers of other tests or agents.
        "agent_marker": f"test-{uuid.uuid4().hex[:12]}",
        "pip_cert_path": CA_BUNDLE if CA_BUNDLE.is_file() else None,
    }
    fields.update(overrides)
    return RuntimeSettings(**fields)


@contextmanager
def runtime_for(tmp_path: Path, **overrides) -> Iterator[DockerRuntime]:
    runtime = DockerRuntime(settings_for(tmp_path / "jobs", **overrides))
    try:
        yield runtime
    finally:
        for owned in runtime.list_own():
            runtime.kill(owned.job_id, owned.attempt)


def spec_for(source: str, **overrides) -> JobSpec:
    fields: dict[str, Any] = {
        "job_id": 1,
        "attempt": 1,
        "files": {"main.py": source.encode()},
        "entrypoint": "main.py",
        "memory_mb": 128,
        "timeout_seconds": 30,
    }
    fields.update(overrides)
    return JobSpec(**fields)


@dataclass
class Finished:
    outcome: Outcome
    logs: bytes
    handle: Handle
    seconds: float


def run_to_end(runtime: DockerRuntime, spec: JobSpec) -> Finished:
    """prepare, start, then read the logs while another thread waits (wait enforces the
    timeout; the log stream only ends when the container does)."""
    prepared = runtime.prepare(spec)
    assert prepared.failure is None, prepared.failure
    started = time.monotonic()
    handle = runtime.start(prepared)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(runtime.wait, handle)
        logs = b"".join(runtime.logs(handle))
        outcome = waiting.result(timeout=spec.timeout_seconds + 60)
    return Finished(outcome, logs, handle, time.monotonic() - started)


def env_forget(runtime: DockerRuntime, requirements: tuple[str, ...]) -> None:
    """Drop the cached environment of these requirements so the next prepare installs."""
    key = env_key(runtime.image_id(), requirements, runtime.settings)
    for volume in runtime.client.volumes.list(filters={"label": f"communipute.env={key}"}):
        with suppress(Exception):
            volume.remove()


@contextmanager
def wheelhouse_removed(runtime: DockerRuntime) -> Iterator[str]:
    """The runtime's wheelhouse volume, removed at the end (a test's own, named per test)."""
    name = wheelhouse_name(runtime.settings)
    try:
        yield name
    finally:
        with suppress(Exception):
            runtime.client.volumes.get(name).remove(force=True)


@pytest.fixture
def runtime(tmp_path):
    with runtime_for(tmp_path) as runtime:
        yield runtime


def test_hello_world_end_to_end(runtime):
    # given
    spec = spec_for("import sys\nprint('hello from the sandbox')\nprint('oops', file=sys.stderr)\n")

    # when
    finished = run_to_end(runtime, spec)

    # then
    assert finished.outcome == Outcome("succeeded", "exit code 0", 0)
    assert sorted(finished.logs.splitlines()) == [b"hello from the sandbox", b"oops"]
    runtime.cleanup(finished.handle)
    assert runtime.list_own() == []
    assert not finished.handle.attempt_dir.exists()


def test_a_failing_script_reports_its_exit_code(runtime):
    finished = run_to_end(runtime, spec_for("raise SystemExit(3)\n"))

    assert finished.outcome == Outcome("failed", "exit code 3", 3)


def test_a_requirement_is_installed_imported_and_cached(runtime):
    # given
    requirements = ("six==1.17.0",)
    env_forget(runtime, requirements)
    spec = spec_for("import six\nprint(six.__version__)\n", requirements=requirements)

    # when
    first = runtime.prepare(spec)
    started = time.monotonic()
    second = runtime.prepare(spec_for("print(1)\n", attempt=2, requirements=requirements))
    cached_seconds = time.monotonic() - started
    finished = run_to_end(
        runtime, spec_for(spec.files["main.py"].decode(), attempt=3, requirements=requirements)
    )

    # then
    assert (first.failure, first.env_cached) == (None, False)
    assert b"Successfully installed six-1.17.0" in first.install_log
    assert (second.failure, second.env_cached, second.install_log) == (None, True, b"")
    assert second.env_ref == first.env_ref
    assert cached_seconds < 1
    assert finished.outcome == Outcome("succeeded", "exit code 0", 0)
    assert finished.logs == b"1.17.0\n"


def test_an_install_failure_fails_the_job_with_the_last_lines_of_pip(runtime):
    # given
    requirements = ("communipute-no-such-package-x1",)
    spec = spec_for("print(1)\n", requirements=requirements)

    # when
    prepared = runtime.prepare(spec)

    # then
    assert prepared.failure is not None
    assert prepared.failure.status == "failed"
    assert prepared.failure.reason.startswith("install failed: ")
    assert "No matching distribution found for communipute-no-such-package-x1" in (
        prepared.failure.reason
    )
    assert prepared.failure.reason.endswith("\n(this host installs binary wheels only)")
    key = env_key(runtime.image_id(), requirements, runtime.settings)
    assert runtime.client.volumes.list(filters={"label": f"communipute.env={key}"}) == []
    assert not prepared.attempt_dir.exists()
    assert runtime.list_own() == []


def test_outputs_come_back_without_following_links(runtime):
    # given
    source = (
        "import os\n"
        "os.makedirs('/outputs/plots')\n"
        "open('/outputs/result.txt', 'w').write('42\\n')\n"
        "open('/outputs/plots/a.csv', 'w').write('x,y\\n')\n"
        "os.symlink('/etc/shadow', '/outputs/shadow')\n"
        "os.mkfifo('/outputs/fifo')\n"
    )

    # when
    finished = run_to_end(runtime, spec_for(source))
    outputs = runtime.collect_outputs(finished.handle)

    # then
    assert finished.outcome == Outcome("succeeded", "exit code 0", 0)
    assert [(output.name, output.size, output.path.read_bytes()) for output in outputs] == [
        ("plots/a.csv", 4, b"x,y\n"),
        ("result.txt", 3, b"42\n"),
    ]


def test_usage_comes_from_the_cgroup_and_the_peak_is_kept(runtime):
    # given: 64 MB touched, then about 1.5 s of CPU
    source = (
        "import time\n"
        "block = b'x' * (64 * 1024 * 1024)\n"
        "end = time.process_time() + 1.5\n"
        "while time.process_time() < end:\n"
        "    pass\n"
        "del block\n"
        "print('done', flush=True)\n"
        "time.sleep(30)\n"
    )
    prepared = runtime.prepare(spec_for(source, memory_mb=256))
    handle = runtime.start(prepared)

    # when
    for chunk in runtime.logs(handle):
        runtime.usage(handle)
        if b"done" in chunk:
            break
    sample = runtime.usage(handle)
    runtime.cancel(handle, 0)
    runtime.wait(handle)

    # then
    assert sample.cpu_seconds >= 1.5
    assert sample.memory_peak_mb >= 64
    assert sample.memory_current_mb < sample.memory_peak_mb
    final = runtime.usage(handle)  # the container is gone: the last sample stays
    assert final == runtime.usage(handle)
    assert final.cpu_seconds >= sample.cpu_seconds
    assert final.memory_peak_mb == sample.memory_peak_mb


def test_the_cpu_of_the_last_moments_before_the_exit_is_counted(runtime):
    # given: a script that burns about 1.5 s of CPU and exits, sampled only at its start
    source = (
        "import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end:\n    pass\n"
    )
    handle = runtime.start(runtime.prepare(spec_for(source)))
    first = runtime.usage(handle)

    # when: it exits between two samples (the cgroup is gone before wait returns)
    outcome = runtime.wait(handle)

    # then: the counters read at the exit are the sample after it, not the one before
    final = runtime.usage(handle)
    assert outcome.status == "succeeded"
    assert first.cpu_seconds < 1
    assert final.cpu_seconds >= 1.5


def test_a_new_runtime_object_finds_and_kills_the_containers_of_the_old_one(tmp_path):
    # given: an agent started a job, then died
    settings = settings_for(tmp_path / "jobs")
    first = DockerRuntime(settings)
    handle = first.start(first.prepare(spec_for("import time\ntime.sleep(60)\n", job_id=9)))
    stranger = DockerRuntime(settings_for(tmp_path / "other"))

    try:
        # when: the restarted agent looks for its own containers
        restarted = DockerRuntime(settings)
        owned = restarted.list_own()
        attached = restarted.attach(9, 1)

        # then
        assert owned == [OwnedContainer(9, 1, handle.ref, "running", "run")]
        assert stranger.list_own() == []
        assert (attached.ref, attached.timeout_seconds, attached.memory_mb) == (handle.ref, 30, 128)
        assert 25 < attached.deadline - time.monotonic() <= 30
        restarted.kill(9, 1)
        assert restarted.list_own() == []
        assert not handle.attempt_dir.exists()
    finally:
        first.kill(9, 1)


def _exited(runtime: DockerRuntime, handle: Handle, timeout: float = 60) -> dict[str, Any]:
    """Wait (without the runtime) until the container has exited; its engine record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attrs = runtime.client.api.inspect_container(handle.ref)
        if not attrs["State"]["Running"]:
            return dict(attrs)
        time.sleep(0.1)
    raise AssertionError(f"the container of job {handle.job_id} did not exit")


def _run_seconds(attrs: dict[str, Any]) -> float:
    ran = run_seconds_of(attrs["State"])
    assert ran is not None
    return ran


def test_a_container_that_exited_while_no_agent_watched_leaves_its_cpu_and_run_time(tmp_path):
    # given: an agent started a job burning 1.5 s of CPU, then died; the job ran to its end
    settings = settings_for(tmp_path / "jobs")
    first = DockerRuntime(settings)
    source = (
        "import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end:\n    pass\n"
    )
    handle = first.start(first.prepare(spec_for(source, job_id=11)))
    attrs = _exited(first, handle)
    time.sleep(2.0)  # the agent stays away a while after the exit

    try:
        # when: the restarted agent finds it again (no cgroup left, no stats)
        restarted = DockerRuntime(settings)
        attached = restarted.attach(11, 1)
        at_attach = restarted.usage(attached)
        outcome = restarted.wait(attached)
        final = restarted.usage(attached)

        # then: the CPU time is what the wrapper measured, the wall time how long it ran
        assert outcome == Outcome("succeeded", "exit code 0", 0)
        run_seconds = _run_seconds(attrs)
        assert 1.5 <= final.cpu_seconds <= min(run_seconds, 2.5), (final, run_seconds)
        assert final.wall_seconds == pytest.approx(run_seconds, abs=0.001)
        assert at_attach == final
        print(f"exited job: cpu {final.cpu_seconds:.3f} s, ran {run_seconds:.3f} s")
    finally:
        first.kill(11, 1)


def test_a_meter_file_claiming_more_than_the_cores_allow_is_clipped(tmp_path):
    # given: a renter that writes 10^8 CPU seconds into the meter and kills the wrapper so it
    # can't write the true figure; half a core
    source = (
        "import json, os, signal, time\n"
        "json.dump({'cpu_seconds': 1e8}, open('/meter/usage.json', 'w'))\n"
        "time.sleep(1.0)\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n"
        "time.sleep(30)\n"
    )
    settings = settings_for(tmp_path / "jobs")
    first = DockerRuntime(settings)
    handle = first.start(first.prepare(spec_for(source, job_id=12, cpus=0.5)))
    attrs = _exited(first, handle)

    try:
        # when
        restarted = DockerRuntime(settings)
        attached = restarted.attach(12, 1)
        restarted.wait(attached)
        final = restarted.usage(attached)

        # then: at most the half core x the time the container ran
        run_seconds = _run_seconds(attrs)
        assert final.cpu_seconds == pytest.approx(0.5 * run_seconds, abs=0.001)
        assert final.wall_seconds == pytest.approx(run_seconds, abs=0.001)
    finally:
        first.kill(12, 1)


def test_a_container_found_after_it_exited_past_its_deadline_ended_as_it_ended(tmp_path):
    # given: a job with a 1 s timeout that finished at once; the agent is back 2 s later
    settings = settings_for(tmp_path / "jobs")
    first = DockerRuntime(settings)
    handle = first.start(first.prepare(spec_for("print('hi')\n", job_id=13, timeout_seconds=1)))
    _exited(first, handle)
    time.sleep(2.0)

    try:
        # when
        restarted = DockerRuntime(settings)
        attached = restarted.attach(13, 1)
        assert attached.deadline < time.monotonic()
        outcome = restarted.wait(attached)

        # then: it succeeded (it did not run into its timeout)
        assert outcome == Outcome("succeeded", "exit code 0", 0)
    finally:
        first.kill(13, 1)


def test_a_script_killed_by_a_signal_is_reported_so_through_the_wrapper(runtime):
    source = "import os, signal\nprint('bye', flush=True)\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    finished = run_to_end(runtime, spec_for(source))

    assert finished.outcome == Outcome("failed", "exit code 139 (killed by SIGSEGV)", 139)
    assert finished.logs == b"bye\n"


def _median_seconds(action, runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        started = time.monotonic()
        action()
        timings.append(time.monotonic() - started)
    return statistics.median(timings)


def test_start_up_time_beside_a_bare_docker_run(runtime, capsys):
    # given: a cached environment
    requirements = ("six==1.17.0",)
    assert runtime.prepare(spec_for("print(1)\n", requirements=requirements)).failure is None
    attempts = iter(range(2, 100))

    def bare() -> None:
        subprocess.run(["docker", "run", "--rm", IMAGE, "python3", "-c", "pass"], check=True)

    def through_the_runtime() -> None:
        spec = spec_for("print('hi')\n", attempt=next(attempts), requirements=requirements)
        finished = run_to_end(runtime, spec)
        assert finished.outcome.status == "succeeded"
        runtime.cleanup(finished.handle)

    # when
    bare_median = _median_seconds(bare)
    runtime_median = _median_seconds(through_the_runtime)

    # then
    with capsys.disabled():
        print(
            f"\nsandbox start-up (median of 5): bare docker run {bare_median * 1000:.0f} ms, "
            f"prepare+start+wait with a cached env {runtime_median * 1000:.0f} ms"
        )
    assert runtime_median < bare_median + 5
