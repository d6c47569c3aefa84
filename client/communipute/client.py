"""``Client``: the renter's way in (docs/sdk.md). It talks only the REST API.

One job is ``Client.run`` (code, requirements, inputs, resources, a cost cap) and the ``Job``
handle it returns. Many are one job group: ``Client.map`` (a script or a function over inputs,
``maps``), ``Client.function`` (``functions``), the ``Group`` handle (``groups``); and
``executor.Executor`` on top. They share ``files`` (what goes where), ``uploads`` (tus) and
``_http`` (retries, errors).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, overload

import httpx
from tqdm import tqdm

from communipute._http import Api
from communipute.config import settings_resolve
from communipute.files import FileSpec, LocalFile, folder_zip, local_files, remote_check
from communipute.functions import (
    CALL_INPUT,
    FUNCTION_INPUT,
    RUNNER_NAME,
    Call,
    RemoteFunction,
    function_outcome,
    function_plan,
    script_outcome,
)
from communipute.groups import Group
from communipute.jobs import Job
from communipute.maps import MapRun
from communipute.models import Disk, GroupInfo, JobInfo, Wallet
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
        body.update(
            _resources(
                requirements=requirements,
                cpus=cpus,
                memory_mb=memory_mb,
                gpus=gpus,
                timeout_seconds=timeout_seconds,
                host=host,
                disk=disk,
                work_exec=work_exec,
                name=name,
            )
        )
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

    # --- job groups: many tasks over many hosts ------------------------------------------------

    def submit_group(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> Group:
        """``POST /api/v1/job-groups/`` with a body as the API takes it (docs/jobs.md "Job
        groups"); ``map`` builds one. Fixed bytes and an ``Idempotency-Key``, as ``submit``."""
        content = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        response = self._api.request(
            "POST",
            "/api/v1/job-groups/",
            content=content,
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
            },
        )
        return Group(self, GroupInfo.from_api(response.json()))

    def group(self, group_id: int) -> Group:
        """A handle on one of your job groups (``NotFound`` for anyone else's)."""
        data = self._api.get(f"/api/v1/job-groups/{int(group_id)}/", {"page_size": 1})
        return Group(self, GroupInfo.from_api(data))

    def groups(self, *, limit: int = 50) -> list[Group]:
        """Your job groups, newest first, at most ``limit``."""
        found: list[Group] = []
        params = {"page_size": max(1, min(limit, 500))}
        for item in self._api.pages("/api/v1/job-groups/", params):
            if len(found) >= limit:
                break
            found.append(Group(self, GroupInfo.from_api(item)))
        return found

    def map(
        self,
        fn_or_script: Callable[..., Any] | str | os.PathLike[str],
        inputs: Iterable[Any],
        *,
        return_exceptions: bool = False,
        timeout: float | None = None,
        **options: Any,
    ) -> list[Any]:
        """Run ``fn_or_script`` over ``inputs`` as one job group, a task per input, on as many
        hosts as the marketplace has; the results in input order (docs/sdk.md "map").

        - A **function** ``f``: each task computes ``f(item)`` on a host (shipped with
          cloudpickle; this Python must be the hosts', else ``PythonVersionMismatch``) and its
          result is the return value.
        - A **script** (a local ``.py`` path): each item is the task's JSON argument, read by
          the script from ``/inputs/task.json`` (``COMMUNIPUTE_TASK_INDEX`` and
          ``COMMUNIPUTE_TASK_COUNT`` in its environment); its result is the parsed
          ``/outputs/result.json`` if it wrote one, else a ``TaskOutput`` (exit code, log).
        - A task that did not succeed is a ``TaskError``: raised (the first in input order,
          as soon as it is read, the rest of the group cancelled) unless
          ``return_exceptions``, which puts it in the task's place instead.

        Options: ``max_cost`` (credits) / ``max_cost_micros``, the group's cap, and
        ``per_task_max_cost`` / ``per_task_max_cost_micros``, each task's (one of the two at
        least: the group's defaults to the task's times the inputs, the task's to the group's
        shared out); ``max_parallel`` (tasks at once, the server's default 10);
        ``requirements``, ``cpus``, ``memory_mb``, ``gpus``, ``timeout_seconds`` (each
        task's), ``host``, ``disk``, ``work_exec``, ``name``, ``shared_inputs`` (files every
        task reads, as ``run``'s ``inputs``), ``host_fault_retries``, ``error_retries``,
        ``idempotency_key``; for a script ``files`` or ``archive`` (as ``run``'s); for a
        function ``results`` (``"json"``, the default, or ``"pickle"`` for any value, only with
        hosts you trust: docs/sdk.md, "Trust"). ``timeout``: seconds to wait for the results
        (``GroupWaitTimeout``; the group goes on).
        """
        run = self.map_submit(fn_or_script, inputs, **options)
        return run.collect(return_exceptions=return_exceptions, timeout=timeout)

    def map_submit(
        self,
        fn_or_script: Callable[..., Any] | str | os.PathLike[str],
        inputs: Iterable[Any],
        **options: Any,
    ) -> MapRun:
        """``map``'s group, submitted and not waited on: ``.group`` is its handle,
        ``.outcomes()`` yields each task's result and value in input order."""
        if isinstance(fn_or_script, str | os.PathLike):
            return self._script_run(fn_or_script, list(inputs), **options)
        return self._function_run(fn_or_script, [((item,), {}) for item in inputs], **options)

    @overload
    def function(self, function: Callable[..., Any], /, **options: Any) -> RemoteFunction: ...

    @overload
    def function(
        self, function: None = None, /, **options: Any
    ) -> Callable[[Callable[..., Any]], RemoteFunction]: ...

    def function(
        self,
        function: Callable[..., Any] | None = None,
        /,
        **options: Any,
    ) -> RemoteFunction | Callable[[Callable[..., Any]], RemoteFunction]:
        """A decorator: ``@client.function(requirements=[...], cpus=..., max_cost=...)`` makes
        a ``RemoteFunction`` with ``.remote(*args)`` (one call, one task) and ``.map(inputs)``;
        ``max_cost`` there is what one call may cost. ``@client.function`` alone works too."""
        if function is not None:
            return RemoteFunction(self, function, options)

        def decorate(target: Callable[..., Any]) -> RemoteFunction:
            return RemoteFunction(self, target, options)

        return decorate

    def _script_run(
        self,
        script: str | os.PathLike[str],
        items: list[Any],
        *,
        files: Iterable[FileSpec] = (),
        archive: str | os.PathLike[str] | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> MapRun:
        if not items:
            raise ValueError("nothing to map: inputs is empty")
        tasks = []
        for index, item in enumerate(items):
            try:
                json.dumps(item, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"inputs[{index}] is not JSON, as a script's argument must be: {exc}"
                ) from None
            tasks.append({"argument": item})
        body, shared = self._group_body(len(tasks), **options)
        body.update(self._code(script, files, archive))
        body["inputs"] = tasks
        group = self._group_post(body, shared, {}, idempotency_key)
        return MapRun(self, group, lambda result: script_outcome(self, result), "script")

    def _function_run(
        self,
        function: Callable[..., Any],
        calls: list[Call],
        *,
        requirements: Sequence[str] | str = (),
        results: str = "json",
        idempotency_key: str | None = None,
        **options: Any,
    ) -> MapRun:
        if not calls:
            raise ValueError("nothing to map: inputs is empty")
        plan = function_plan(function, calls, requirements=requirements, results=results)
        if options.get("name") is None:
            options["name"] = getattr(function, "__name__", None) or RUNNER_NAME
        body, shared = self._group_body(len(calls), requirements=plan.requirements, **options)
        body["entrypoint"] = RUNNER_NAME
        body["files"] = plan.files
        blobs: dict[str, bytes] = {}
        if plan.function_blob is not None:
            blobs[FUNCTION_INPUT] = plan.function_blob
        tasks = []
        for index, (argument, call) in enumerate(plan.tasks):
            task: dict[str, Any] = {"argument": argument}
            if call is not None:
                key = f"call-{index}"
                blobs[key] = call
                task["inputs"] = [{"path": CALL_INPUT, "sha256": key}]  # filled in below
            tasks.append(task)
        body["inputs"] = tasks
        group = self._group_post(body, shared, blobs, idempotency_key)
        return MapRun(
            self, group, lambda result: function_outcome(self, result, results), "function"
        )

    def _group_body(
        self,
        count: int,
        *,
        requirements: Sequence[str] | str = (),
        shared_inputs: Iterable[InputSpec] = (),
        max_parallel: int | None = None,
        max_cost: Credits | None = None,
        max_cost_micros: int | None = None,
        per_task_max_cost: Credits | None = None,
        per_task_max_cost_micros: int | None = None,
        cpus: float | Decimal | str | None = None,
        memory_mb: int | None = None,
        gpus: int | None = None,
        timeout_seconds: int | None = None,
        host: int | None = None,
        disk: Disk | Mapping[str, int] | None = None,
        work_exec: bool | None = None,
        name: str | None = None,
        host_fault_retries: int | None = None,
        error_retries: int | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any] | LocalFile]]:
        """A group's body but its code and tasks, every option checked; the shared inputs
        still to upload."""
        group_cap = _optional_cap("max_cost", max_cost, max_cost_micros)
        task_cap = _optional_cap("per_task_max_cost", per_task_max_cost, per_task_max_cost_micros)
        if group_cap is None and task_cap is None:
            raise ValueError(
                "give the group's cost cap (max_cost or max_cost_micros) or each task's "
                "(per_task_max_cost or per_task_max_cost_micros)"
            )
        if group_cap is None:
            assert task_cap is not None
            group_cap = task_cap * count
        if task_cap is None:
            task_cap = max(1, group_cap // count)
        body: dict[str, Any] = {
            "max_cost_micros": group_cap,
            "task_max_cost_micros": task_cap,
        }
        body.update(
            _resources(
                requirements=requirements,
                cpus=cpus,
                memory_mb=memory_mb,
                gpus=gpus,
                timeout_seconds=timeout_seconds,
                host=host,
                disk=disk,
                work_exec=work_exec,
                name=name,
            )
        )
        for field, value in (
            ("max_parallel", max_parallel),
            ("host_fault_retries", host_fault_retries),
            ("error_retries", error_retries),
        ):
            if value is not None:
                body[field] = _whole(field, value)
        return body, _inputs_planned(shared_inputs)

    def _group_post(
        self,
        body: dict[str, Any],
        shared: list[dict[str, Any] | LocalFile],
        blobs: Mapping[str, bytes],
        idempotency_key: str | None,
    ) -> Group:
        """Upload the shared inputs and the pickles too big to send inline (``blobs``: a key
        -> its bytes), put their digests in the body, create the group."""
        local = [item for item in shared if isinstance(item, LocalFile)]
        with tempfile.TemporaryDirectory(prefix="communipute-") as folder:
            written: dict[str, LocalFile] = {}
            for key, data in blobs.items():
                path = Path(folder) / key
                path.write_bytes(data)
                written[key] = LocalFile(path, key, len(data))
            everything = [*local, *written.values()]
            digests = self._upload_all(everything) if everything else {}
        if shared:
            body["shared_inputs"] = [
                item
                if isinstance(item, dict)
                else {"path": item.remote, "sha256": digests[item.local]}
                for item in shared
            ]
        if FUNCTION_INPUT in written:
            body.setdefault("shared_inputs", []).append(
                {"path": FUNCTION_INPUT, "sha256": digests[written[FUNCTION_INPUT].local]}
            )
        for task in body.get("inputs") or ():
            for item in task.get("inputs") or ():
                if item["sha256"] in written:
                    item["sha256"] = digests[written[item["sha256"]].local]
        return self.submit_group(body, idempotency_key=idempotency_key)

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


def _resources(
    *,
    requirements: Sequence[str] | str,
    cpus: float | Decimal | str | None,
    memory_mb: int | None,
    gpus: int | None,
    timeout_seconds: int | None,
    host: int | None,
    disk: Disk | Mapping[str, int] | None,
    work_exec: bool | None,
    name: str | None,
) -> dict[str, Any]:
    """A job's (or a group's template's) requirements, resources and placement as the API
    takes them; ``None`` is the server's default."""
    if isinstance(requirements, str):
        requirements = requirements.splitlines()
    body: dict[str, Any] = {"requirements": [str(line) for line in requirements]}
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
    return body


def _optional_cap(name: str, credits: Credits | None, micros: int | None) -> int | None:
    if credits is not None and micros is not None:
        raise ValueError(f"give {name} (credits) or {name}_micros, not both")
    if credits is None and micros is None:
        return None
    return _cap(credits, micros)


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
