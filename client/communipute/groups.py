"""A handle on one job group (docs/jobs.md "Job groups"): its state, its results in task order
as they finish, cancel, receipt; and what a finished task left (an output's bytes, its log).

The group's socket is the browser's (session only), so results are polled: ``GET
…/results/?index=N`` returns the results from N up to the first task still going, and its
``next_index`` is where to read on — each result once, in order.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from communipute.errors import ConnectionFailed, GroupWaitTimeout
from communipute.models import GroupInfo, GroupReceipt, GroupTask, LogPage, TaskResult

if TYPE_CHECKING:
    from communipute.client import Client

POLL_FIRST = 0.2  # seconds between polls while nothing changes, growing by half to POLL_MAX
POLL_MAX = 2.0
RESULTS_PAGE = 100
LOG_MAX = 1024 * 1024  # the most of a task's log kept (its tail)
LOG_SETTLE_SECONDS = 5.0  # how long a finished task's log may take to be complete


class Group:
    """A job group on the marketplace. ``info`` is what the server said last."""

    def __init__(self, client: Client, info: GroupInfo) -> None:
        self._client = client
        self.info = info

    def __repr__(self) -> str:
        return f"<Group {self.id} {self.status} {self.info.count} tasks>"

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def status(self) -> str:
        return self.info.status

    @property
    def is_finished(self) -> bool:
        return self.info.is_finished

    def _path(self, tail: str = "") -> str:
        return f"/api/v1/job-groups/{self.id}/{tail}"

    def refresh(self, *, status: str | None = None, page_size: int = 100) -> GroupInfo:
        """``GET job-groups/{id}/`` again, with the first page of its tasks (``status``:
        only the tasks in that status)."""
        params: dict[str, Any] = {"page_size": page_size}
        if status is not None:
            params["status"] = status
        self.info = GroupInfo.from_api(self._client._api.get(self._path(), params))
        return self.info

    def tasks(self, status: str | None = None) -> list[GroupTask]:
        """Every task (an index) with its status and its job's, by index."""
        params: dict[str, Any] = {"page_size": 500}
        if status is not None:
            params["status"] = status
        api = self._client._api
        data = api.get(self._path(), params)
        self.info = GroupInfo.from_api(data)
        found = list(self.info.tasks)
        following = (data.get("tasks") or {}).get("next")
        while following:
            page = api.get(str(following))
            found += [GroupTask.from_api(item) for item in page["tasks"]["results"]]
            following = page["tasks"].get("next")
        return found

    def results_page(
        self, index: int = 0, *, limit: int = RESULTS_PAGE
    ) -> tuple[list[TaskResult], int, bool]:
        """One read of the results from ``index``: those ready in order (up to the first task
        still going), the index to read on from, and whether every result is read."""
        page = self._client._api.get(self._path("results/"), {"index": index, "limit": limit})
        found = [TaskResult.from_api(item) for item in page.get("results") or ()]
        return found, int(page["next_index"]), bool(page.get("is_complete"))

    def results(self, index: int = 0, *, timeout: float | None = None) -> Iterator[TaskResult]:
        """The tasks' results in index order, from ``index``, each as soon as it and every
        task before it has finished; ends after the last. ``timeout`` seconds without the
        group finishing: ``GroupWaitTimeout`` (the group goes on)."""
        api = self._client._api
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = POLL_FIRST
        while True:
            found, index, is_complete = self.results_page(index)
            yield from found
            if is_complete:
                return
            if len(found) == RESULTS_PAGE:
                continue  # more are there already
            if found:
                pause = POLL_FIRST
            if deadline is not None and time.monotonic() + pause > deadline:
                raise GroupWaitTimeout(self.refresh(page_size=1), timeout or 0)
            api.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)

    def wait(self, timeout: float | None = None) -> GroupInfo:
        """Until the group has ended (``finished`` or ``cancelled``); its last state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = POLL_FIRST
        while not self.refresh(page_size=1).is_finished:
            if deadline is not None and time.monotonic() + pause > deadline:
                raise GroupWaitTimeout(self.info, timeout or 0)
            self._client._api.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)
        return self.info

    def cancel(self) -> GroupInfo:
        """No task starts any more (the pending ones end ``skipped``), the running ones are
        cancelled; the group ends ``cancelled`` once they have. An ended group: ``ApiError``
        409 ``group_finished``."""
        self.info = GroupInfo.from_api(self._client._api.json("POST", self._path("cancel/")))
        return self.info

    def receipt(self) -> GroupReceipt:
        """A line per task job and their sums (exactly what left your wallet for it)."""
        return GroupReceipt.from_api(self._client._api.get(self._path("receipt/")))


def output_bytes(client: Client, job_id: int, name: str, sha256: str = "") -> bytes:
    """One output of a job, read into memory (results are small; ``Job.download`` streams big
    ones to disk), checked against ``sha256`` when given."""
    response = client._api.request("GET", f"/api/v1/jobs/{job_id}/outputs/{quote(name, safe='/')}")
    data = response.content
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise ConnectionFailed(f"job {job_id}'s {name} arrived with another sha256 than {sha256}")
    return data


def task_log(client: Client, job_id: int) -> str:
    """A finished job's log (the tail, at most ``LOG_MAX`` bytes), waiting a little for the
    last of it to arrive (a host uploads its log's end as the job ends)."""
    api = client._api
    deadline = time.monotonic() + LOG_SETTLE_SECONDS
    text, offset = "", 0
    while True:
        page = LogPage.from_api(api.get(f"/api/v1/jobs/{job_id}/logs/", {"offset": offset}))
        text = (text + page.data)[-LOG_MAX:]
        if page.is_complete or page.attempt is None:  # all of it, or it never ran
            return text
        if page.next_offset != offset:
            offset = page.next_offset
            continue
        if time.monotonic() >= deadline:
            return text
        api.sleep(POLL_FIRST)
