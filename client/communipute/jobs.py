"""A handle on one job: its state, its live log, waiting, outputs, receipt, cancel."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote

from communipute.errors import ConnectionFailed, JobWaitTimeout
from communipute.models import JobInfo, LogPage, Output, Receipt

if TYPE_CHECKING:
    from communipute.client import Client

POLL_FIRST = 0.2  # seconds between polls, growing by half to POLL_MAX while nothing changes
POLL_MAX = 2.0
FULL_PAGE = 512 * 1024  # a log page this long (the server's are up to 1 MiB) has more behind it
DOWNLOAD_RETRIES = 3


class Job:
    """A job on the marketplace. ``info`` (and ``status`` …) is what the server said last:
    ``refresh()`` asks again; ``wait()`` and ``logs()`` keep it up to date."""

    def __init__(self, client: Client, info: JobInfo) -> None:
        self._client = client
        self.info = info

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.status}>"

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def status(self) -> str:
        return self.info.status

    @property
    def is_finished(self) -> bool:
        return self.info.is_finished

    @property
    def exit_code(self) -> int | None:
        return self.info.exit_code

    @property
    def cost_micros(self) -> int:
        return self.info.cost_micros

    def _path(self, tail: str = "") -> str:
        return f"/api/v1/jobs/{self.id}/{tail}"

    def refresh(self) -> JobInfo:
        self.info = JobInfo.from_api(self._client._api.get(self._path()))
        return self.info

    def wait(self, timeout: float | None = None) -> JobInfo:
        """Until the job has finished (any final status: check ``.status`` or
        ``.succeeded``); its final state. ``timeout`` seconds passed first: ``JobWaitTimeout``
        (the job goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = POLL_FIRST
        while not self.refresh().is_finished:
            if deadline is not None and time.monotonic() + pause > deadline:
                left = deadline - time.monotonic()
                if left > 0:
                    self._client._api.sleep(left)
                if self.refresh().is_finished:
                    break
                raise JobWaitTimeout(self.info, timeout or 0)
            self._client._api.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)
        return self.info

    def log_pages(self, follow: bool = True) -> Iterator[LogPage]:
        """The log as the server stores it, page by page (``GET …/logs/?offset=``), of the
        latest attempt. ``follow``: go on while the job runs, onto a later attempt if the
        first host lost the job, until the job finished and its log is complete."""
        api, sleep = self._client._api, self._client._api.sleep
        attempt: int | None = None
        offset, pause = 0, POLL_FIRST
        while True:
            params: dict[str, int] = {"offset": offset}
            if attempt is not None:
                params["attempt"] = attempt
            page = LogPage.from_api(api.get(self._path("logs/"), params))
            if page.attempt is not None and attempt is None:
                attempt = page.attempt
            if page.data or page.next_offset != offset:
                read, offset, pause = page.next_offset - page.offset, page.next_offset, POLL_FIRST
                yield page
                if not page.is_complete:
                    # A full page: more is stored already, read on at once; else the log is
                    # coming as the job writes it: look again shortly.
                    if follow and read < FULL_PAGE:
                        sleep(POLL_FIRST)
                    continue
            elif not follow:
                return
            # Caught up with what is stored: done, a later attempt, or wait for more.
            info = self.refresh()
            if attempt is not None and info.attempt > attempt:
                attempt, offset, pause = info.attempt, 0, POLL_FIRST
                continue
            if page.is_complete and info.is_finished:
                return
            if info.is_finished and attempt is None:
                return  # it ended before any host ran it (cancelled while queued …)
            if not follow:
                return
            sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)

    def logs(self, follow: bool = True) -> Iterator[str]:
        """The log text as it arrives (``follow``), or what is stored now."""
        shown: int | None = None  # the attempt whose log was shown last
        for page in self.log_pages(follow):
            if not page.data:
                continue
            if shown is not None and page.attempt != shown:
                yield f"\n[communipute: the job runs again, attempt {page.attempt}]\n"
            shown = page.attempt
            yield page.data

    def outputs(self) -> list[Output]:
        """The files the job left in ``/outputs`` (name, size, sha256)."""
        return [Output.from_api(item) for item in self._client._api.pages(self._path("outputs/"))]

    def download(self, name: str | Output, dest: str | os.PathLike[str] = ".") -> Path:
        """Stream one output to disk and check its sha256; the file's path. ``dest``: a file
        to write, or an existing folder (the output's name is kept under it, folders and
        all). A connection cut mid-way goes on from the bytes already written (``Range``)."""
        output = name if isinstance(name, Output) else self._output(name)
        pure = PurePosixPath(output.name)
        if pure.is_absolute() or ".." in pure.parts:
            raise ValueError(f"refusing to write an output named {output.name!r}")
        target = Path(dest)
        if target.is_dir():
            target = target.joinpath(*pure.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        path = self._path("outputs/") + quote(output.name, safe="/")
        try:
            got = self._fetch(path, partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if output.sha256 and got != output.sha256:
            partial.unlink(missing_ok=True)
            raise ConnectionFailed(f"{output.name} arrived with sha256 {got}, not {output.sha256}")
        partial.replace(target)
        return target

    def _fetch(self, path: str, partial: Path) -> str:
        """Download into ``partial``, resuming after a cut; the sha256 of what it holds."""
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for tries in range(DOWNLOAD_RETRIES + 1):
                written = out.tell()
                headers = {"Range": f"bytes={written}-"} if written else {}
                try:
                    with self._client._api.stream(path, headers) as response:
                        if written and response.status_code != 206:
                            out.seek(0)
                            out.truncate()
                            digest = hashlib.sha256()
                        for block in response.iter_bytes():
                            out.write(block)
                            digest.update(block)
                    break
                except ConnectionFailed:
                    if tries == DOWNLOAD_RETRIES:
                        raise
                    self._client._api.sleep(POLL_FIRST * 2**tries)
        return digest.hexdigest()

    def _output(self, name: str) -> Output:
        for output in self.outputs():
            if output.name == name:
                return output
        names = ", ".join(output.name for output in self.outputs()) or "none"
        raise FileNotFoundError(f"job {self.id} has no output {name!r} (it has: {names})")

    def receipt(self) -> Receipt:
        """What the job cost, per attempt, and what went back to the wallet."""
        return Receipt.from_api(self._client._api.get(self._path("receipt/")))

    def cancel(self) -> JobInfo:
        """Cancel: at once while queued, else asked of its host (``cancel_requested``) and
        ended when the host stopped it. A finished job: ``ApiError`` 409 ``job_finished``."""
        self.info = JobInfo.from_api(self._client._api.json("POST", self._path("cancel/")))
        return self.info
