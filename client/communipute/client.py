"""``Client``: the renter's way in (docs/sdk.md). It talks only the REST API.

One job is ``Client.run`` (code, requirements, inputs, resources, a cost cap) and the ``Job``
handle it returns. The modules below it are meant to be shared by what runs many jobs at once
(job groups): ``files`` (what goes where), ``uploads`` (tus), ``_http`` (retries, errors).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

import httpx
from tqdm import tqdm

from communipute._http import Api
from communipute.config import settings_resolve
from communipute.files import FileSpec, LocalFile, folder_zip, local_files, remote_check
from communipute.jobs import Job
from communipute.models import Disk, JobInfo, Wallet
from communipute.money import Credits, credits_to_micros
from communipute.uploads import TusUploader, file_sha256

# An input: a local file or folder (uploaded), (local, path under /inputs), or an input as the
# API takes it: {"path", "sha256"} for a blob you hold, {"path", "url", "sha256", "size"?}.
InputSpec = FileSpec | Mapping[str, Any]


class Client:
    """A renter's connection to a CommuniPute server.

    ``Client(url, token)``; either may be left out and comes from ``COMMUNIPUTE_URL`` /
    ``COMMUNIPUTE_TOKEN``, or from the file ``communipute login`` wrote (``config``: another
    such file). ``progress``: show upload progress bars (default: when stderr is a terminal).
    ``transport``: an ``httpx`` transport (tests use ``httpx.MockTransport``).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        progress: bool | None = None,
        config: str | os.PathLike[str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = settings_resolve(url, token, path=Path(config) if config else None)
        self.url = settings.url
        self.progress = progress
        self._api = Api(settings.url, settings.token, timeout=timeout, transport=transport)
        self._uploader = TusUploader(self._api)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._api.close()

    def __repr__(self) -> str:
        return f"<communipute.Client {self.url}>"

    # --- jobs --------------------------------------------------------------------------------

    def run(
        self,
        script: str | os.PathLike[str],
        *,
        requirements: Sequence[str] | str = (),
        inputs: Iterable[InputSpec] = (),
        files: Iterable[FileSpec] = (),
        archive: str | os.PathLike[str] | None = None,
        cpus: float | Decimal | str | None = None,
        memory_mb: int | None = None,
        gpus: int | None = None,
        timeout_seconds: int | None = None,
        max_cost: Credits | None = None,
        max_cost_micros: int | None = None,
        host: int | None = None,
        disk: Disk | Mapping[str, int] | None = None,
        work_exec: bool | None = None,
        name: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit ``script`` as a job; its handle.

        - ``script``: the local ``.py`` file to run; ``files``: more files beside it (a path,
          a folder, or ``(local, path in the job)``). With ``archive`` (a zip, or a folder
          packed as one here) the code is that archive, uploaded as a blob, and ``script`` is
          the entrypoint's path inside it.
        - ``requirements``: pip requirement lines (or one requirements.txt text).
        - ``inputs``: files the job reads under ``/inputs``: local files and folders are
          uploaded first (tus, resumed after a cut; a file you uploaded before is not sent
          again), then named by their sha256.
        - ``max_cost`` (credits) or ``max_cost_micros``: the hard cap, held from your wallet
          until the job ends (402 ``InsufficientCredits`` if it doesn't cover it).
        - ``host``: a host id from the catalog; default: the marketplace places the job.
        - The rest, left ``None``, take the server's defaults (1 CPU, 512 MB, 1 hour …).

        The submit carries an ``Idempotency-Key`` (``idempotency_key``, else a fresh UUID), so
        a retry after a lost answer can't make a second job.
        """
        # Everything that can be refused here is checked before a byte is uploaded.
        body: dict[str, Any] = {"max_cost_micros": _cap(max_cost, max_cost_micros)}
        planned = _inputs_planned(inputs)
        if isinstance(requirements, str):
            requirements = requirements.splitlines()
        body["requirements"] = [str(line) for line in requirements]
        if cpus is not None:
            body["cpus"] = float(Decimal(str(cpus)))
        for field, value in (
            ("memory_mb", memory_mb),
            ("gpus", gpus),
            ("timeout_seconds", timeout_seconds),
        ):
            if value is not None:
                body[field] = _whole(field, value)
        if disk is not None:
            body["disk"] = disk.to_api() if isinstance(disk, Disk) else dict(disk)
        if work_exec is not None:
            body["work_exec"] = bool(work_exec)
        if name is not None:
            body["name"] = name
        if host is None:
            body["placement"] = "auto"
        else:
            body["host"] = _whole("host", host)
        body.update(self._code(script, files, archive))
        local = [item for item in planned if isinstance(item, LocalFile)]
        digests = self._upload_all(local) if local else {}
        if planned:
            body["inputs"] = [
                item
                if isinstance(item, dict)
                else {"path": item.remote, "sha256": digests[item.local]}
                for item in planned
            ]
        return self.submit(body, idempotency_key=idempotency_key)

    def submit(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        """``POST /api/v1/jobs/`` with a body as the API takes it (docs/jobs.md); ``run``
        builds one. Sent as fixed bytes with an ``Idempotency-Key`` and retried as is."""
        content = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        response = self._api.request(
            "POST",
            "/api/v1/jobs/",
            content=content,
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
            },
        )
        return Job(self, JobInfo.from_api(response.json()))

    def job(self, job_id: int) -> Job:
        """A handle on one of your jobs (``NotFound`` for anyone else's)."""
        return Job(self, JobInfo.from_api(self._api.get(f"/api/v1/jobs/{int(job_id)}/")))

    def jobs(self, status: str | Iterable[str] | None = None, *, limit: int = 50) -> list[Job]:
        """Your jobs, newest first, at most ``limit``; ``status``: only those statuses."""
        params: dict[str, Any] = {"page_size": max(1, min(limit, 500))}
        if status is not None:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        found: list[Job] = []
        for item in self._api.pages("/api/v1/jobs/", params):
            if len(found) >= limit:
                break
            found.append(Job(self, JobInfo.from_api(item)))
        return found

    # --- money ---------------------------------------------------------------------------------

    def wallet(self) -> Wallet:
        return Wallet.from_api(self._api.get("/api/v1/wallet/"))

    # --- blobs ---------------------------------------------------------------------------------

    def upload(self, path: str | os.PathLike[str]) -> str:
        """Upload one local file to your blob store (unless you hold it already); its sha256,
        which a job names as ``{"path": ..., "sha256": ...}`` in ``inputs``."""
        local = Path(path)
        if not local.is_file():
            raise FileNotFoundError(f"no such file: {local}")
        return self._upload_all([LocalFile(local, local.name, local.stat().st_size)])[local]

    def _upload_all(self, files: Sequence[LocalFile]) -> dict[Path, str]:
        """Hash each file, then upload each digest once, with one progress bar for all."""
        digests = {file.local: file_sha256(file.local) for file in files}
        unique: dict[str, LocalFile] = {}
        for file in files:
            unique.setdefault(digests[file.local], file)
        total = sum(file.size for file in unique.values())
        shown = self.progress if self.progress is not None else sys.stderr.isatty()
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"uploading {len(unique)} file{'s' if len(unique) != 1 else ''}",
            disable=not shown,
            file=sys.stderr,
        ) as bar:
            for sha256, file in unique.items():
                reached = 0

                def tell(offset: int) -> None:
                    nonlocal reached
                    bar.update(offset - reached)
                    reached = offset

                self._uploader.upload(
                    file.local, sha256=sha256, size=file.size, name=file.local.name, progress=tell
                )
        return digests

    def _code(
        self,
        script: str | os.PathLike[str],
        files: Iterable[FileSpec],
        archive: str | os.PathLike[str] | None,
    ) -> dict[str, Any]:
        """The job's code: inline files (``files`` with the script first), or a zip blob."""
        extra = list(files)
        if archive is None:
            local = Path(script)
            if not local.is_file():
                raise FileNotFoundError(f"no such script: {local}")
            entrypoint = remote_check(local.name)
            inline = local_files([(local, entrypoint), *extra])
            return {
                "entrypoint": entrypoint,
                "files": [
                    {"path": file.remote, "content_b64": _b64(file.local)} for file in inline
                ],
            }
        if extra:
            raise ValueError("give files= or archive=, not both: put the files in the archive")
        packed = Path(archive)
        entrypoint = _entrypoint_in(packed, Path(script))
        if packed.is_dir():
            with tempfile.TemporaryDirectory(prefix="communipute-") as folder:
                zipped = Path(folder) / f"{packed.resolve().name or 'code'}.zip"
                folder_zip(packed, zipped)
                sha256 = self.upload(zipped)
        elif packed.is_file():
            sha256 = self.upload(packed)
        else:
            raise FileNotFoundError(f"no such archive: {packed}")
        return {"entrypoint": entrypoint, "archive_sha256": sha256}


def _inputs_planned(inputs: Iterable[InputSpec]) -> list[dict[str, Any] | LocalFile]:
    """Each input as the API takes it (a mapping, passed on) or a local file to upload first."""
    planned: list[dict[str, Any] | LocalFile] = []
    for spec in inputs:
        if isinstance(spec, Mapping):
            if "path" not in spec or "sha256" not in spec:
                raise ValueError(f"an input given as a mapping needs path and sha256: {spec}")
            planned.append(dict(spec))
        else:
            planned.extend(local_files([spec]))
    return planned


def _cap(credits: Credits | None, micros: int | None) -> int:
    if (credits is None) == (micros is None):
        raise ValueError("give the cost cap as max_cost (credits) or max_cost_micros, one of them")
    if micros is not None:
        return _whole("max_cost_micros", micros)
    assert credits is not None
    return credits_to_micros(credits)


def _whole(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} is a whole number, not {value!r}")
    return value


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _entrypoint_in(archive: Path, script: Path) -> str:
    """The entrypoint inside the archive: ``script`` as given, or relative to a folder it is
    in (``src/app/main.py`` with archive ``src`` is ``app/main.py``)."""
    if archive.is_dir() and script.is_file():
        try:
            return script.resolve().relative_to(archive.resolve()).as_posix()
        except ValueError:
            raise ValueError(
                f"the script {script} is not inside the archive folder {archive}"
            ) from None
    return remote_check(PurePosixPath(str(script).replace(os.sep, "/")).as_posix())
