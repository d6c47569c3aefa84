"""Python functions as tasks: shipped with cloudpickle, run by a small runner script on the
host, their return values (or exceptions) brought back (docs/sdk.md, "Functions").

- **What travels.** The function, cloudpickled once per group: inline as a code file
  (``communipute_function.pkl``) when small, else uploaded as a blob every task reads
  (``communipute-function.pkl`` in ``/inputs``). Each call's ``(args, kwargs)``, cloudpickled:
  inline in the task's JSON argument (base64) when small, else a blob of the task's own
  (``communipute-call.pkl``). The code is ``_task_runner.py`` (the entrypoint), and
  ``cloudpickle==<this client's version>`` joins the requirements.
- **By value.** cloudpickle sends a function of an installed package by reference (the host
  imports it: name that package in ``requirements``) and one of ``__main__`` by value. Modules
  of your own that are not installed — any module whose file is outside the interpreter's
  library and site-packages folders — are sent by value too, so a function from
  ``mytasks.py`` beside your script runs on a host that never saw ``mytasks.py``.
- **Pickles don't cross Python versions.** The hosts' runner image runs Debian bookworm's
  ``python3``, 3.11 (scripts/build-runner-image.sh): on another major.minor, shipping a
  function is refused at once (``PythonVersionMismatch``), before anything is sent. A
  marketplace whose runner image has another Python says so in ``COMMUNIPUTE_RUNNER_PYTHON``
  (``3.12``); the runner checks again on the host and refuses a mismatch (stage ``load``).
- **Results.** ``results="json"`` (the default): the value as ``result.json``, which can't run
  code here. ``results="pickle"``: the return value as ``result.pkl``, loaded here — loading a
  pickle can run code, and it comes from the host that ran the task: only with hosts you trust.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import operator
import os
import pickle
import re
import site
import sys
import sysconfig
import threading
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from communipute.errors import ConfigError, PythonVersionMismatch, RemoteTraceback, TaskError
from communipute.groups import output_bytes, task_log
from communipute.models import Output, TaskResult

if TYPE_CHECKING:
    from communipute.client import Client

RUNNER_PYTHON = (3, 11)  # Debian bookworm's python3, the runner image's (the hosts')
RUNNER_PYTHON_ENV = "COMMUNIPUTE_RUNNER_PYTHON"
FORMAT = 1  # of task.json, as _task_runner.py reads it
RUNNER_NAME = "communipute_runner.py"
FUNCTION_INLINE = "communipute_function.pkl"
FUNCTION_INPUT = "communipute-function.pkl"
CALL_INPUT = "communipute-call.pkl"
# Inline up to these sizes (the server takes 160 KiB of inline code and 64 KiB of JSON per
# argument); bigger goes as a blob.
FUNCTION_INLINE_MAX = 96 * 1024
CALL_INLINE_MAX = 40 * 1024
RESULT_FORMATS = ("pickle", "json")

Call = tuple[tuple[Any, ...], dict[str, Any]]


def runner_python() -> tuple[int, int]:
    """The hosts' Python (major, minor): ``COMMUNIPUTE_RUNNER_PYTHON`` or ``RUNNER_PYTHON``."""
    given = os.environ.get(RUNNER_PYTHON_ENV, "").strip()
    if not given:
        return RUNNER_PYTHON
    found = re.fullmatch(r"(\d+)\.(\d+)", given)
    if found is None:
        raise ConfigError(f"{RUNNER_PYTHON_ENV}={given!r} is not a major.minor such as 3.11")
    return int(found[1]), int(found[2])


def python_check() -> tuple[int, int]:
    """This Python's major.minor, refused unless the hosts run the same."""
    local = (sys.version_info[0], sys.version_info[1])
    runner = runner_python()
    if local != runner:
        raise PythonVersionMismatch(local, runner)
    return local


def _cloudpickle() -> Any:
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ImportError(
            "shipping a function needs cloudpickle: pip install cloudpickle"
        ) from None
    return cloudpickle


def cloudpickle_version() -> str:
    return str(_cloudpickle().__version__)


def pinned(*names: str) -> list[str]:
    """Requirement lines that pin each package to the version installed here:
    ``pinned("dask", "numpy")`` -> ``["dask==2026.11.0", "numpy==2.3.1"]``; for code whose
    pickles need the same package on the hosts (a Dask graph's tasks need dask there)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def with_cloudpickle(requirements: Sequence[str] | str) -> list[str]:
    """The requirements and ``cloudpickle==<this client's>``; a line that names cloudpickle
    otherwise is refused (the pickles are this client's version's)."""
    lines = requirements.splitlines() if isinstance(requirements, str) else list(requirements)
    pin = f"cloudpickle=={cloudpickle_version()}"
    kept: list[str] = []
    for line in lines:
        found = _REQUIREMENT_NAME.match(str(line))
        name = found[1].lower().replace("_", "-") if found else ""
        if name == "cloudpickle":
            if str(line).replace(" ", "") != pin:
                raise ValueError(
                    f"requirements name {line!r}: a function's task gets {pin}, the version "
                    "this client pickles with; leave cloudpickle out"
                )
            continue
        kept.append(str(line))
    return [*kept, pin]


# --- pickling ---------------------------------------------------------------------------------

_BY_VALUE = threading.Lock()
_installed: tuple[str, ...] | None = None


def _installed_folders() -> tuple[str, ...]:
    global _installed
    if _installed is None:
        paths = sysconfig.get_paths()
        found = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
        found.update(site.getsitepackages())
        found.add(site.getusersitepackages())
        found.update({sys.base_prefix, sys.base_exec_prefix} - {sys.prefix})
        _installed = tuple(
            os.path.join(os.path.realpath(path), "") for path in sorted(found) if path
        )
    return _installed


def local_modules() -> list[str]:
    """The top-level modules imported here that a host would not have: their file lies outside
    the interpreter's library and site-packages folders (this package left out)."""
    installed = _installed_folders()
    found: set[str] = set()
    for name, module in list(sys.modules.items()):
        top = name.partition(".")[0]
        if top in found or top in ("__main__", "communipute"):
            continue
        if not isinstance(module, types.ModuleType):  # what some libraries put there
            continue
        path = getattr(module, "__file__", None)
        if not path:
            continue
        real = os.path.realpath(path)
        if not real.startswith(installed):
            found.add(top)
    return sorted(name for name in found if isinstance(sys.modules.get(name), types.ModuleType))


def dumps(value: Any) -> bytes:
    """``value`` cloudpickled, with the modules of ``local_modules`` by value."""
    cloudpickle = _cloudpickle()
    with _BY_VALUE:
        added = []
        for name in local_modules():
            module = sys.modules[name]
            if name in cloudpickle.list_registry_pickle_by_value():
                continue
            cloudpickle.register_pickle_by_value(module)
            added.append(module)
        try:
            return bytes(cloudpickle.dumps(value))
        finally:
            for module in added:
                cloudpickle.unregister_pickle_by_value(module)


def runner_source() -> bytes:
    return (Path(__file__).with_name("_task_runner.py")).read_bytes()


@dataclass(frozen=True)
class FunctionPlan:
    """A function's group, before anything is sent: the code files, the blobs to upload (a
    local temporary path -> its name in /inputs, for the shared function or a task's call),
    and each task's argument."""

    requirements: list[str]
    files: list[dict[str, str]]
    function_blob: bytes | None  # too big to send inline: uploaded, read from /inputs
    tasks: list[tuple[dict[str, Any], bytes | None]]  # (argument, call blob or None)


def function_plan(
    function: Callable[..., Any],
    calls: Iterable[Call],
    *,
    requirements: Sequence[str] | str,
    results: str,
) -> FunctionPlan:
    """Check and pickle everything a function's group needs (``PythonVersionMismatch``,
    ``ValueError``, ``TypeError`` before anything is sent)."""
    if isinstance(function, RemoteFunction):
        function = function.function  # the function itself travels, not its client
    if not callable(function):
        raise TypeError(f"map takes a function or a script's path, not {function!r}")
    if results not in RESULT_FORMATS:
        raise ValueError(f"results is 'pickle' or 'json', not {results!r}")
    python = python_check()
    lines = with_cloudpickle(requirements)
    pickled = dumps(function)
    files = [{"path": RUNNER_NAME, "content_b64": _b64(runner_source())}]
    function_blob: bytes | None = None
    if len(pickled) <= FUNCTION_INLINE_MAX:
        files.append({"path": FUNCTION_INLINE, "content_b64": _b64(pickled)})
    else:
        function_blob = pickled
    tasks: list[tuple[dict[str, Any], bytes | None]] = []
    for args, kwargs in calls:
        call = dumps((tuple(args), dict(kwargs)))
        argument: dict[str, Any] = {
            "communipute": FORMAT,
            "python": list(python),
            "results": results,
        }
        if len(call) <= CALL_INLINE_MAX:
            argument["call_b64"] = _b64(call)
            tasks.append((argument, None))
        else:
            argument["call_file"] = CALL_INPUT
            tasks.append((argument, call))
    if not tasks:
        raise ValueError("nothing to map: inputs is empty")
    return FunctionPlan(lines, files, function_blob, tasks)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskOutput:
    """A script's task that succeeded without writing ``/outputs/result.json``: its exit code,
    its log and the files it left (``Client.job(job_id).download(...)`` fetches one)."""

    index: int
    job_id: int | None
    exit_code: int | None
    log: str
    outputs: tuple[Output, ...]


def _load_pickle(data: bytes) -> Any:
    _cloudpickle()  # what the pickle may refer to
    return pickle.loads(data)  # noqa: S301  # the task's own result (module doc: trust)


def function_outcome(client: Client, result: TaskResult, results: str) -> Any:
    """A function task's return value, or the ``TaskError`` that says why there is none
    (returned, not raised)."""
    if result.succeeded and result.job_id is not None:
        name = "result.pkl" if results == "pickle" else "result.json"
        found = result.output(name)
        if found is not None:
            data = output_bytes(client, result.job_id, name, found.sha256)
            try:
                return _load_pickle(data) if results == "pickle" else json.loads(data)
            except Exception as exc:  # a class not importable here, a value that won't load
                failure = TaskError(
                    index=result.index,
                    job_id=result.job_id,
                    status=result.status,
                    exit_code=result.exit_code,
                    reason=f"its result could not be loaded here: {type(exc).__name__}: {exc}",
                    error_type=type(exc).__name__,
                    message=str(exc),
                    exception=exc,
                    stage="result",
                )
                failure.__cause__ = exc
                return failure
        return TaskError(
            index=result.index,
            job_id=result.job_id,
            status=result.status,
            exit_code=result.exit_code,
            reason=f"the task succeeded but left no {name}",
            log=task_log(client, result.job_id),
        )
    return _task_error(client, result, pickles=results == "pickle")


def _task_error(client: Client, result: TaskResult, *, pickles: bool) -> TaskError:
    if result.job_id is None:  # it never started (the group's cap, its wallet, a cancel)
        return TaskError(
            index=result.index,
            job_id=None,
            status=result.status,
            exit_code=None,
            reason=result.reason,
        )
    described = result.output("error.json")
    if described is None:  # it died before the runner could say (killed, timed out, pip …)
        log = task_log(client, result.job_id)
        error_type, message, traceback = _traceback_in(log)
        return TaskError(
            index=result.index,
            job_id=result.job_id,
            status=result.status,
            exit_code=result.exit_code,
            reason=result.reason,
            error_type=error_type,
            message=message,
            traceback=traceback,
            log=log,
        )
    error = json.loads(output_bytes(client, result.job_id, "error.json", described.sha256))
    exception: BaseException | None = None
    pickled = result.output("error.pkl")
    if pickles and pickled is not None:
        try:
            loaded = _load_pickle(output_bytes(client, result.job_id, "error.pkl", pickled.sha256))
        except Exception:  # its class isn't importable here: the text is all there is
            loaded = None
        if isinstance(loaded, BaseException):
            exception = loaded
    traceback = str(error.get("traceback") or "")
    if exception is not None and traceback:
        exception.__cause__ = RemoteTraceback(traceback)
    failure = TaskError(
        index=result.index,
        job_id=result.job_id,
        status=result.status,
        exit_code=result.exit_code,
        reason=result.reason,
        error_type=str(error.get("type") or ""),
        message=str(error.get("message") or ""),
        traceback=traceback,
        exception=exception,
        stage=str(error.get("stage") or ""),
    )
    failure.__cause__ = exception
    return failure


def script_outcome(client: Client, result: TaskResult) -> Any:
    """A script task's result: its ``/outputs/result.json`` parsed if it wrote one, else a
    ``TaskOutput`` (exit code and log); a task that did not succeed is a ``TaskError``
    (returned, not raised) with its log and the last traceback in it."""
    if not result.succeeded or result.job_id is None:
        return _task_error(client, result, pickles=False)
    found = result.output("result.json")
    if found is not None:
        return json.loads(output_bytes(client, result.job_id, "result.json", found.sha256))
    return TaskOutput(
        index=result.index,
        job_id=result.job_id,
        exit_code=result.exit_code,
        log=task_log(client, result.job_id),
        outputs=result.outputs,
    )


_TRACEBACK = "Traceback (most recent call last):"


def _traceback_in(log: str) -> tuple[str, str, str]:
    """The last Python traceback in a log: (exception type, its message, the traceback)."""
    start = log.rfind(_TRACEBACK)
    if start < 0:
        return "", "", ""
    lines = log[start:].splitlines()
    end = len(lines)
    for number, line in enumerate(lines[1:], 1):
        if line and not line.startswith((" ", "\t")):
            end = number + 1  # the exception line ends it
            break
    traceback = "\n".join(lines[:end]) + "\n"
    last = lines[end - 1] if end - 1 < len(lines) else ""
    error_type, sep, message = last.partition(":")
    if not sep or " " in error_type.strip():
        return last.strip(), "", traceback
    return error_type.strip(), message.strip(), traceback


# --- the decorator ----------------------------------------------------------------------------


class RemoteFunction:
    """A function with the job options to run it on the marketplace (``@client.function``).
    Calling it runs it here; ``.remote(*args, **kwargs)`` runs one call as a task and returns
    its value; ``.map(inputs)`` runs it over many, one task each, in one group.

    ``max_cost`` / ``max_cost_micros`` are what **one call** may cost; ``.map`` takes the
    group's cap (default: that times the number of inputs)."""

    def __init__(
        self,
        client: Client,
        function: Callable[..., Any],
        options: Mapping[str, Any],
    ) -> None:
        self.client = client
        self.function = function
        self.options = dict(options)
        self.__wrapped__ = function
        self.__name__ = getattr(function, "__name__", "function")
        self.__qualname__ = getattr(function, "__qualname__", self.__name__)
        self.__doc__ = function.__doc__

    def __repr__(self) -> str:
        return f"<communipute.RemoteFunction {self.__qualname__}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (a function sent to a host that calls this one), it is the plain function:
        # called there, it runs there. Rebuilt by the standard library alone.
        return (operator.itemgetter(0), ((self.function,),))

    def _options(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The decorator's options for a run (its cap a call's), then ``overrides``."""
        options = dict(self.options)
        for given, per_task in (
            ("max_cost", "per_task_max_cost"),
            ("max_cost_micros", "per_task_max_cost_micros"),
        ):
            if given in options:
                options[per_task] = options.pop(given)
        options.update(overrides)
        return options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """One call as one task (a group of one); its return value, or its ``TaskError``
        raised (``exception``: the function's own, also the error's ``__cause__``)."""
        run = self.client._function_run(self.function, [(args, kwargs)], **self._options({}))
        [value] = run.collect(return_exceptions=False)
        return value

    def map(
        self,
        inputs: Iterable[Any],
        *,
        max_cost: Any = None,
        max_cost_micros: int | None = None,
        return_exceptions: bool = False,
        **overrides: Any,
    ) -> list[Any]:
        """``client.map(function, inputs, ...)`` with this function's options; ``max_cost``
        here is the group's cap (default: the per-call cap times the number of inputs)."""
        items = list(inputs)
        options = self._options(overrides)
        if max_cost is not None:
            options["max_cost"] = max_cost
        if max_cost_micros is not None:
            options["max_cost_micros"] = max_cost_micros
        run = self.client._function_run(self.function, [((i,), {}) for i in items], **options)
        return run.collect(return_exceptions=return_exceptions)
