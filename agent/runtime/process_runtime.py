"""A runtime WITHOUT isolation, for the local demo only.

It runs the renter's script as an ordinary child process of the agent, with the agent's user,
file system and network. It exists so that ``make demo`` works where Docker does not; it must
never run a stranger's code. It refuses to construct unless ``allow_unisolated=True`` is passed,
and says so loudly in the log each time it is made and each time it starts a job.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import cast

import psutil

from agent.runtime.files import attempt_dir_create, attempt_dir_path, outputs_collect, tree_remove
from agent.runtime.inputs import INPUTS_DIR
from agent.runtime.reasons import attempt_outcome, install_host_problem, log_tail
from agent.runtime.types import (
    Handle,
    Isolation,
    JobSpec,
    Outcome,
    OutputFile,
    OwnedContainer,
    Prepared,
    RuntimeSettings,
    StopStatus,
    UsageSample,
    host_fault,
)

log = logging.getLogger(__name__)

WARNING = (
    "ProcessRuntime ISOLATES NOTHING: jobs run as %s with this machine's files and network. "
    "Use it for the local demo only, never for other people's code."
)


class ProcessRuntimeRefused(RuntimeError):
    pass


class ProcessRuntime:
    isolation: Isolation = "none"

    def __init__(self, settings: RuntimeSettings, *, allow_unisolated: bool = False) -> None:
        if allow_unisolated is not True:
            raise ProcessRuntimeRefused(
                "the process runtime isolates nothing; pass allow_unisolated=True to use it "
                "for a local demo"
            )
        self.settings = settings
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._env_lock = threading.Lock()
        log.warning(WARNING, _user_name())

    def readiness_check(self) -> str:
        """Always ready: it needs nothing but this interpreter (and isolates nothing)."""
        return ""

    def disk_quota_active(self) -> bool:
        """Never: the script is a plain process of the agent's user, on the host's disk."""
        return False

    def prepare(self, spec: JobSpec) -> Prepared:
        python, install_log, failure = self._env_ensure(spec)
        if failure is not None:
            directory = attempt_dir_path(self.settings.work_root, spec.job_id, spec.attempt)
            return Prepared(spec, directory, None, install_log, failure)
        owner = f"{os.geteuid()}:{os.getegid()}"
        directory = attempt_dir_create(
            self.settings.work_root, spec.job_id, spec.attempt, spec.files, owner
        )
        return Prepared(spec, directory, python, install_log)

    def _env_ensure(self, spec: JobSpec) -> tuple[str, bytes, Outcome | None]:
        """A virtual environment per requirement set under work_root/envs (no requirements:
        the agent's own interpreter)."""
        if not spec.requirements:
            return sys.executable, b"", None
        key = hashlib.sha256("\n".join(sorted(spec.requirements)).encode()).hexdigest()[:24]
        venv = self.settings.work_root / "envs" / key
        python = str(venv / "bin" / "python")
        with self._env_lock:
            if (venv / ".ready").exists():
                return python, b"", None
            venv.parent.mkdir(parents=True, exist_ok=True)
            output = b""
            for command in (
                [sys.executable, "-m", "venv", "--clear", str(venv)],
                [python, "-m", "pip", "install", "-q", "--", *spec.requirements],
            ):
                result = subprocess.run(command, capture_output=True, check=False)
                output += result.stdout + result.stderr
                if result.returncode != 0:
                    host_problem = install_host_problem(output)
                    if host_problem is not None:  # the host's index or disk
                        return python, output, host_fault(host_problem, log_tail(output, 6, 1500))
                    return python, output, Outcome("failed", f"install failed: {log_tail(output)}")
            (venv / ".ready").touch()
        return python, output, None

    def start(self, prepared: Prepared) -> Handle:
        if prepared.failure is not None or prepared.env_ref is None:
            raise ValueError("this attempt failed to prepare; it cannot start")
        spec = prepared.spec
        log.warning(WARNING, _user_name())
        environment = dict(os.environ)
        environment.update(
            PYTHONUNBUFFERED="1",
            COMMUNIPUTE_JOB_ID=str(spec.job_id),
            COMMUNIPUTE_ATTEMPT=str(spec.attempt),
            COMMUNIPUTE_OUTPUTS=str(prepared.attempt_dir / "outputs"),
            **spec.task_environment(),
        )
        inputs = prepared.attempt_dir / INPUTS_DIR
        if inputs.is_dir():  # no mount here: the directory of links itself (runtime/inputs.py)
            environment["COMMUNIPUTE_INPUTS"] = str(inputs)
        process = subprocess.Popen(
            [prepared.env_ref, spec.entrypoint],
            cwd=prepared.attempt_dir / "work",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,  # its own process group, so cancel reaches its children
        )
        self._processes[str(process.pid)] = process
        return Handle(
            job_id=spec.job_id,
            attempt=spec.attempt,
            ref=str(process.pid),
            attempt_dir=prepared.attempt_dir,
            timeout_seconds=spec.timeout_seconds,
            memory_mb=spec.memory_mb,
            deadline=time.monotonic() + spec.timeout_seconds,
            pid=process.pid,
        )

    def attach(self, job_id: int, attempt: int) -> Handle:
        raise LookupError("the process runtime does not survive an agent restart")

    def logs(self, handle: Handle) -> Iterator[bytes]:
        stream = cast(io.BufferedReader, self._processes[handle.ref].stdout)
        while chunk := stream.read1(self.settings.log_chunk_bytes):
            yield chunk

    def wait(self, handle: Handle) -> Outcome:
        process = self._processes[handle.ref]
        try:
            exit_code = process.wait(timeout=max(handle.deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            return attempt_outcome(handle, process.wait(), timed_out=True)
        return attempt_outcome(handle, exit_code)

    def cancel(
        self,
        handle: Handle,
        grace_seconds: float,
        *,
        status: StopStatus = "cancelled",
        reason: str = "cancelled",
    ) -> None:
        handle.stop_status, handle.stop_reason = status, reason
        process = self._processes[handle.ref]
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)

    def usage(self, handle: Handle) -> UsageSample:
        try:
            root = psutil.Process(handle.pid)
            tree = [root, *root.children(recursive=True)]
            cpu = sum(p.cpu_times().user + p.cpu_times().system for p in tree)
            rss = sum(p.memory_info().rss for p in tree)
        except psutil.Error:
            return handle.last_usage
        handle.peak_memory_bytes = max(handle.peak_memory_bytes, rss)
        handle.last_usage = UsageSample(
            cpu_seconds=max(cpu, handle.last_usage.cpu_seconds),
            memory_current_mb=rss // (1024 * 1024),
            memory_peak_mb=handle.peak_memory_bytes // (1024 * 1024),
        )
        return handle.last_usage

    def collect_outputs(self, handle: Handle) -> list[OutputFile]:
        return outputs_collect(
            handle.attempt_dir / "outputs",
            self.settings.outputs_max_bytes,
            self.settings.outputs_max_files,
        )

    def cleanup(self, handle: Handle) -> None:
        process = self._processes.pop(handle.ref, None)
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        tree_remove(handle.attempt_dir)

    def list_own(self) -> list[OwnedContainer]:
        return []

    def kill(self, job_id: int, attempt: int) -> None:
        tree_remove(attempt_dir_path(self.settings.work_root, job_id, attempt))


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _user_name() -> str:
    try:
        return psutil.Process().username()
    except psutil.Error:
        return f"uid {os.geteuid()}"
