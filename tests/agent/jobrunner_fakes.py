"""A scripted Runtime and a recording AgentLink for the job manager's unit tests (no Docker)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.jobrunner.options import RunnerOptions
from agent.jobrunner.uploads import UploadFailed
from agent.runtime.types import (
    Handle,
    JobSpec,
    Outcome,
    OutputFile,
    OwnedContainer,
    Prepared,
    StopStatus,
    UsageSample,
)

TIMEOUT = 5.0
FAST = RunnerOptions(
    sample_seconds=0.01,
    log_flush_seconds=0.01,
    log_resend_seconds=0.2,
    log_drain_seconds=0.5,
    cancel_grace_seconds=10,
    budget_grace_seconds=1,
    final_resend_seconds=0.1,
    finish_give_up_seconds=5,
    upload_give_up_seconds=2,
    upload_backoff_seconds=0.01,
)


class FakeRuntime:
    """Each attempt runs until the test calls ``exit`` (or a cancel/kill stops it)."""

    isolation = "docker"

    def __init__(self, work_root: Path) -> None:
        self.work_root = work_root
        self.calls: list[tuple[Any, ...]] = []
        self.not_ready = ""  # what readiness_check answers
        self.disk_quota = False  # what disk_quota_active answers
        self.readiness_checks = 0
        self.readiness_gate: threading.Event | None = None  # a check that hangs until set
        self.prepare_error: Exception | None = None
        self.start_error: Exception | None = None
        self.wait_error: Exception | None = None  # raised once the attempt ends
        self.start_gate: threading.Event | None = None
        self.prepare_failure: Outcome | None = None
        self.install_log = b""
        self.prepare_gate: threading.Event | None = None
        self.sample = UsageSample(cpu_seconds=0.0, memory_current_mb=0, memory_peak_mb=0)
        self.usage_failures: list[Exception] = []
        self.list_own_failure: Exception | None = None
        self.outputs: list[OutputFile] = []
        self.owned: list[OwnedContainer] = []
        self.attachable: dict[tuple[int, int], float] = {}  # -> seconds the container has run
        self._logs: dict[tuple[int, int], queue.Queue[bytes | None]] = {}
        self._exited: dict[tuple[int, int], threading.Event] = {}
        self._outcomes: dict[tuple[int, int], Outcome] = {}
        self.started: set[tuple[int, int]] = set()  # containers that exist (start - kill)

    # --- what tests do ---------------------------------------------------------------------

    def output(self, job_id: int, attempt: int, data: bytes) -> None:
        self._queue(job_id, attempt).put(data)

    def exit(self, job_id: int, attempt: int, outcome: Outcome) -> None:
        self._outcomes[(job_id, attempt)] = outcome
        self._stop(job_id, attempt)

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    # --- Runtime ---------------------------------------------------------------------------

    def readiness_check(self) -> str:
        self.readiness_checks += 1
        if self.readiness_gate is not None:
            self.readiness_gate.wait(TIMEOUT)
        return self.not_ready

    def disk_quota_active(self) -> bool:
        return self.disk_quota

    def prepare(self, spec: JobSpec) -> Prepared:
        self.calls.append(("prepare", spec.job_id, spec.attempt))
        if self.prepare_gate is not None:
            assert self.prepare_gate.wait(TIMEOUT)
        if self.prepare_error is not None:
            raise self.prepare_error
        directory = self.work_root / f"job-{spec.job_id}-{spec.attempt}"
        if self.prepare_failure is not None:
            return Prepared(spec, directory, None, self.install_log, self.prepare_failure)
        directory.mkdir(parents=True, exist_ok=True)
        return Prepared(spec, directory, "env", self.install_log)

    def start(self, prepared: Prepared) -> Handle:
        spec = prepared.spec
        self.calls.append(("start", spec.job_id, spec.attempt))
        if self.start_gate is not None:
            assert self.start_gate.wait(TIMEOUT)
        if self.start_error is not None:
            raise self.start_error
        self.started.add((spec.job_id, spec.attempt))
        return Handle(
            job_id=spec.job_id,
            attempt=spec.attempt,
            ref=f"c-{spec.job_id}-{spec.attempt}",
            attempt_dir=prepared.attempt_dir,
            timeout_seconds=spec.timeout_seconds,
            memory_mb=spec.memory_mb,
            deadline=time.monotonic() + spec.timeout_seconds,
        )

    def attach(self, job_id: int, attempt: int) -> Handle:
        self.calls.append(("attach", job_id, attempt))
        if (job_id, attempt) not in self.attachable:
            raise LookupError("gone")
        ran = self.attachable[(job_id, attempt)]
        return Handle(
            job_id=job_id,
            attempt=attempt,
            ref=f"c-{job_id}-{attempt}",
            attempt_dir=self.work_root / f"job-{job_id}-{attempt}",
            timeout_seconds=600,
            memory_mb=512,
            deadline=time.monotonic() - ran + 600,
        )

    def logs(self, handle: Handle) -> Iterator[bytes]:
        source = self._queue(handle.job_id, handle.attempt)
        while (chunk := source.get(timeout=TIMEOUT)) is not None:
            yield chunk

    def wait(self, handle: Handle) -> Outcome:
        key = (handle.job_id, handle.attempt)
        assert self._event(*key).wait(TIMEOUT * 2), "the attempt never ended"
        if self.wait_error is not None:
            raise self.wait_error
        if handle.stop_status is not None:
            return Outcome(handle.stop_status, handle.stop_reason, 143)
        return self._outcomes[key]

    def cancel(
        self,
        handle: Handle,
        grace_seconds: float,
        *,
        status: StopStatus = "cancelled",
        reason: str = "cancelled",
    ) -> None:
        self.calls.append(("cancel", handle.job_id, handle.attempt, grace_seconds, status, reason))
        handle.stop_status, handle.stop_reason = status, reason
        self._stop(handle.job_id, handle.attempt)

    def usage(self, handle: Handle) -> UsageSample:
        if self.usage_failures:
            raise self.usage_failures.pop(0)
        return self.sample

    def collect_outputs(self, handle: Handle) -> list[OutputFile]:
        self.calls.append(("collect_outputs", handle.job_id, handle.attempt))
        return list(self.outputs)

    def cleanup(self, handle: Handle) -> None:
        self.calls.append(("cleanup", handle.job_id, handle.attempt))

    def list_own(self) -> list[OwnedContainer]:
        if self.list_own_failure is not None:
            raise self.list_own_failure
        return list(self.owned)

    def kill(self, job_id: int, attempt: int) -> None:
        self.calls.append(("kill", job_id, attempt))
        self.started.discard((job_id, attempt))
        if self.prepare_gate is not None:
            self.prepare_gate.set()
        self._stop(job_id, attempt)

    # --- helpers ---------------------------------------------------------------------------

    def _queue(self, job_id: int, attempt: int) -> queue.Queue[bytes | None]:
        return self._logs.setdefault((job_id, attempt), queue.Queue())

    def _event(self, job_id: int, attempt: int) -> threading.Event:
        return self._exited.setdefault((job_id, attempt), threading.Event())

    def _stop(self, job_id: int, attempt: int) -> None:
        if not self._event(job_id, attempt).is_set():
            self._queue(job_id, attempt).put(None)
            self._event(job_id, attempt).set()


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, str]] = []
        self.is_connected = True
        self.usage_report_seconds = 3600.0
        self._changed = asyncio.Event()

    def send(self, message_type: str, data: Any) -> str:
        message_id = f"m{len(self.sent) + 1}"
        self.sent.append((message_type, data, message_id))
        self._changed.set()
        return message_id

    def of(self, message_type: str) -> list[Any]:
        return [data for kind, data, _ in self.sent if kind == message_type]

    def types(self, *, without: tuple[str, ...] = ()) -> list[str]:
        return [kind for kind, _, _ in self.sent if kind not in without]

    def id_of_last(self, message_type: str) -> str:
        return [mid for kind, _, mid in self.sent if kind == message_type][-1]

    async def until(self, condition: Any, what: str = "a message") -> Any:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.05)
        raise AssertionError(f"timed out waiting for {what}; sent: {self.types()}")

    async def next_of(self, message_type: str, count: int = 1) -> Any:
        return await self.until(
            lambda: self.of(message_type) if len(self.of(message_type)) >= count else None,
            f"{count} x {message_type}",
        )


def log_as_stored(chunks: list[Any]) -> str:
    """The log as the server keeps it: each chunk adds only its bytes past the contiguous end
    (resent and overlapping chunks add nothing twice)."""
    stored = b""
    for chunk in chunks:
        data = chunk["data"].encode()
        if chunk["offset"] <= len(stored) < chunk["offset"] + len(data):
            stored += data[len(stored) - chunk["offset"] :]
    return stored.decode()


class FakeUploader:
    def __init__(self) -> None:
        self.uploaded: list[tuple[int, int, str]] = []
        self.failures: dict[str, list[UploadFailed]] = {}

    def __call__(self, job_id: int, attempt: int, output: OutputFile) -> None:
        if self.failures.get(output.name):
            raise self.failures[output.name].pop(0)
        self.uploaded.append((job_id, attempt, output.name))


def offer(job_id: int = 7, attempt: int = 1, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "job_id": job_id,
        "attempt": attempt,
        "offer_expires_at": "2030-01-01T00:00:00Z",
        "entrypoint": "main.py",
        "files": [{"path": "main.py", "content_b64": base64.b64encode(b"print(1)").decode()}],
        "requirements": [],
        "limits": {
            "cpus": 1.0,
            "memory_mb": 512,
            "gpus": 0,
            "timeout_seconds": 600,
            "allow_network": False,
        },
        "rates": {
            "cpu_core_hour_micros": 0,
            "memory_gb_hour_micros": 0,
            "gpu_hour_micros": 0,
        },
        "max_cost_micros": 1_000_000,
        "charged_micros": 0,
    }
    values.update(overrides)
    return values


def output_file(tmp_path: Path, name: str, content: bytes) -> OutputFile:
    path = tmp_path / name
    path.write_bytes(content)
    return OutputFile(name, len(content), hashlib.sha256(content).hexdigest(), path)
