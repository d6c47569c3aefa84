"""Job groups on the fake server (``FakeServer.handlers``), whose tasks run here, each the way
a host runs one: the group's code files in a folder of their own, the task's argument as
``task.json`` and its input blobs (the fake's, by sha256) in an inputs folder, an empty outputs
folder, ``COMMUNIPUTE_TASK_INDEX``/``COUNT``, and ``python3 <entrypoint>`` — this interpreter,
in a fresh process whose path has nothing of this checkout (so a function that arrives by
reference to a test module could not load) — its exit code, log and outputs kept.

``auto`` (the default) runs every task when the group is created; else a task waits (its job
``queued``) until ``start`` marks it running and ``finish`` runs it. ``reveal`` limits how
many results the next reads of ``results/`` may show (a group still going).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx

from tests.client.fakes import FakeServer, envelope

FINAL = {"succeeded", "failed", "cancelled", "timed_out", "budget_exhausted", "skipped"}


@dataclass
class FakeTask:
    index: int
    job_id: int
    status: str = "running"  # running (its job queued or running), or final
    job_status: str = "queued"
    exit_code: int | None = None
    reason: str = ""
    log: str = ""
    outputs: dict[str, bytes] = field(default_factory=dict)


@dataclass
class FakeGroup:
    id: int
    body: dict[str, Any]
    tasks: list[FakeTask]
    status: str = "running"
    cancel_requested: bool = False


class FakeGroups:
    def __init__(self, server: FakeServer, root: Path, *, auto: bool = True) -> None:
        self.server = server
        self.root = root
        self.auto = auto
        self.groups: dict[int, FakeGroup] = {}
        self.reveal: int | None = None  # at most this many results shown, None: all ready
        self.cancelled_jobs: list[int] = []
        self._next_group = 40
        self._next_job = 100
        server.handlers.append(self.handle)

    # --- what a test does ------------------------------------------------------------------

    @property
    def only(self) -> FakeGroup:
        [group] = self.groups.values()
        return group

    def start(self, group_id: int, index: int) -> None:
        self.groups[group_id].tasks[index].job_status = "running"

    def finish(self, group_id: int, index: int) -> None:
        group = self.groups[group_id]
        self._run(group, group.tasks[index])

    # --- the server ------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response | None:
        method, path = request.method, request.url.path
        query = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        if (method, path) == ("POST", "/api/v1/job-groups/"):
            return self._create(json.loads(request.read()))
        found = re.fullmatch(r"/api/v1/job-groups/(\d+)/(results/|cancel/)?", path)
        if found:
            group = self.groups.get(int(found[1]))
            if group is None:
                return envelope(404, "not_found", "no such job group")
            if found[2] == "results/" and method == "GET":
                return httpx.Response(200, json=self._results(group, query))
            if found[2] == "cancel/" and method == "POST":
                return self._cancel(group)
            if found[2] is None and method == "GET":
                return httpx.Response(200, json=self._detail(group, query.get("status")))
        found = re.fullmatch(r"/api/v1/jobs/(\d+)/(outputs/(.+)|logs/|cancel/)?", path)
        if found:
            task = self._task(int(found[1]))
            if task is None:
                return envelope(404, "not_found", "no such job")
            if found[2] and found[2].startswith("outputs/") and method == "GET":
                data = task.outputs.get(unquote(found[3]))
                if data is None:
                    return envelope(404, "not_found", "no such output")
                return httpx.Response(200, content=data)
            if found[2] == "logs/" and method == "GET":
                return httpx.Response(200, json=self._log(task, int(query.get("offset", 0))))
            if found[2] == "cancel/" and method == "POST":
                self.cancelled_jobs.append(task.job_id)
                task.status = task.job_status = "cancelled"
                return httpx.Response(200, json=self._job(task))
            if found[2] is None and method == "GET":
                return httpx.Response(200, json=self._job(task))
        return None

    def _task(self, job_id: int) -> FakeTask | None:
        for group in self.groups.values():
            for task in group.tasks:
                if task.job_id == job_id:
                    return task
        return None

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        count = len(body["inputs"]) if "inputs" in body else int(body["count"])
        self._next_group += 1
        tasks = []
        for index in range(count):
            self._next_job += 1
            tasks.append(FakeTask(index, self._next_job))
        group = FakeGroup(self._next_group, body, tasks)
        self.groups[group.id] = group
        if self.auto:
            for task in tasks:
                self._run(group, task)
        return httpx.Response(201, json=self._detail(group, None))

    def _cancel(self, group: FakeGroup) -> httpx.Response:
        if group.status != "running":
            return envelope(409, "group_finished", "the group has ended")
        group.cancel_requested = True
        for task in group.tasks:
            if task.status not in FINAL:
                task.status = "cancelled" if task.job_status == "running" else "skipped"
                task.job_status = "cancelled"
        self._settle(group)
        return httpx.Response(200, json=self._info(group))

    def _settle(self, group: FakeGroup) -> None:
        if all(task.status in FINAL for task in group.tasks):
            group.status = "cancelled" if group.cancel_requested else "finished"

    def _run(self, group: FakeGroup, task: FakeTask) -> None:
        body = group.body
        folder = self.root / f"job-{task.job_id}"
        code, inputs, outputs = folder / "code", folder / "inputs", folder / "outputs"
        for made in (code, inputs, outputs):
            made.mkdir(parents=True)
        for item in body.get("files") or ():
            target = code / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(item["content_b64"]))
        own = body["inputs"][task.index] if "inputs" in body else {}
        for item in [*(body.get("shared_inputs") or ()), *(own.get("inputs") or ())]:
            target = inputs / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.server.blobs[item["sha256"]])
        if "argument" in own:
            (inputs / "task.json").write_text(json.dumps(own["argument"]))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(folder),
            "COMMUNIPUTE_INPUTS": str(inputs),
            "COMMUNIPUTE_OUTPUTS": str(outputs),
            "COMMUNIPUTE_TASK_INDEX": str(task.index),
            "COMMUNIPUTE_TASK_COUNT": str(len(group.tasks)),
        }
        ran = subprocess.run(
            [sys.executable, "-I", str(code / body["entrypoint"])],
            cwd=code,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        task.exit_code = ran.returncode
        task.log = ran.stdout + ran.stderr
        task.status = task.job_status = "succeeded" if ran.returncode == 0 else "failed"
        task.reason = "" if ran.returncode == 0 else f"the script exited with {ran.returncode}"
        task.outputs = {
            path.relative_to(outputs).as_posix(): path.read_bytes()
            for path in sorted(outputs.rglob("*"))
            if path.is_file()
        }
        self._settle(group)

    # --- shapes ----------------------------------------------------------------------------

    def _info(self, group: FakeGroup) -> dict[str, Any]:
        counts = {status: 0 for status in ["pending", "running", *sorted(FINAL)]}
        for task in group.tasks:
            counts[task.status] += 1
        return {
            "id": group.id,
            "name": group.body.get("name", ""),
            "status": group.status,
            "status_reason": "",
            "count": len(group.tasks),
            "counts": counts,
            "max_parallel": group.body.get("max_parallel", 10),
            "open_tasks": counts["running"],
            "max_cost_micros": group.body["max_cost_micros"],
            "task_max_cost_micros": group.body["task_max_cost_micros"],
            "cost_micros": 1000 * sum(task.status in FINAL for task in group.tasks),
            "host_fault_retries": 3,
            "error_retries": 0,
            "cancel_requested": group.cancel_requested,
            "created_at": "2026-11-25T14:10:00Z",
            "finished_at": None,
        }

    def _detail(self, group: FakeGroup, status: str | None) -> dict[str, Any]:
        rows = [
            {
                "index": task.index,
                "job_id": task.job_id,
                "status": task.status,
                "job_status": task.job_status,
                "exit_code": task.exit_code,
                "reason": task.reason,
            }
            for task in group.tasks
            if status is None or task.status == status
        ]
        page = {"count": len(rows), "next": None, "previous": None, "results": rows}
        return {**self._info(group), "tasks": page}

    def _results(self, group: FakeGroup, query: dict[str, str]) -> dict[str, Any]:
        index, limit = int(query.get("index", 0)), int(query.get("limit", 100))
        ready = []
        for task in group.tasks[index : index + limit]:
            if task.status not in FINAL:
                break
            if self.reveal is not None and task.index >= self.reveal:
                break
            ready.append(
                {
                    "index": task.index,
                    "job_id": None if task.status == "skipped" else task.job_id,
                    "status": task.status,
                    "exit_code": task.exit_code,
                    "reason": task.reason,
                    "cost_micros": 1000,
                    "outputs": [
                        {"name": name, "size": len(data), "sha256": _sha256(data)}
                        for name, data in task.outputs.items()
                    ],
                }
            )
        next_index = index + len(ready)
        return {
            "group_id": group.id,
            "index": index,
            "next_index": next_index,
            "results": ready,
            "is_complete": next_index >= len(group.tasks),
        }

    def _log(self, task: FakeTask, offset: int) -> dict[str, Any]:
        data = task.log.encode()[offset:]
        return {
            "job_id": task.job_id,
            "attempt": 1,
            "offset": offset,
            "next_offset": offset + len(data),
            "data": data.decode(),
            "truncated": False,
            "is_complete": task.status in FINAL,
        }

    def _job(self, task: FakeTask) -> dict[str, Any]:
        from tests.client.fakes import job_json

        return job_json(task.job_id, status=task.job_status, exit_code=task.exit_code)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
