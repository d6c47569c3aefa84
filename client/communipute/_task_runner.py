"""The script a function's task runs on its host: ``communipute.functions`` sends this file as
the job's code (the entrypoint), with the pickled function beside it. It imports nothing of
``communipute`` (the host has only the job's requirements, cloudpickle among them).

It reads ``task.json`` (the task's argument, in ``/inputs``)::

    {"communipute": 1, "python": [3, 11], "results": "pickle" | "json",
     "call_b64": "<the pickled (args, kwargs), base64>"}   # or "call_file": an input's path

loads the function (``communipute_function.pkl`` beside this file, or the input
``communipute-function.pkl`` when it was too big to send inline), calls it, and leaves in
``/outputs``:

- ``result.pkl`` (``results: "pickle"``: the return value, cloudpickled) or ``result.json``
  (``results: "json"``: the return value as JSON), and exits 0; or
- ``error.json`` ``{type, message, traceback, stage, python}`` and, with pickles, ``error.pkl``
  (the exception itself, where it pickles), and exits 1. ``stage`` says what went wrong: ``load``
  (another Python than the pickles', cloudpickle missing, a module the function needs that the
  host lacks), ``call`` (the function raised) or ``result`` (the value would not pickle).
"""

import base64
import json
import os
import pickle
import sys
import traceback
from typing import Any

FORMAT = 1
INPUTS = os.environ.get("COMMUNIPUTE_INPUTS", "/inputs")
OUTPUTS = os.environ.get("COMMUNIPUTE_OUTPUTS", "/outputs")
HERE = os.path.dirname(os.path.abspath(__file__))
FUNCTION_INLINE = os.path.join(HERE, "communipute_function.pkl")
FUNCTION_INPUT = os.path.join(INPUTS, "communipute-function.pkl")


class Refused(Exception):
    """The call can't be made here (no traceback of ours is worth showing)."""


def _write(name: str, data: bytes) -> None:
    """Write an output whole: to a temporary name first, then renamed."""
    path = os.path.join(OUTPUTS, name)
    with open(path + ".part", "wb") as handle:
        handle.write(data)
    os.replace(path + ".part", path)


def _fail(stage: str, exc: BaseException, formatted: str, pickler: Any) -> int:
    error: dict[str, Any] = {
        "type": type(exc).__qualname__,
        "module": type(exc).__module__,
        "message": str(exc),
        "traceback": formatted,
        "stage": stage,
        "python": list(sys.version_info[:3]),
    }
    if pickler is not None:
        try:
            _write("error.pkl", pickler.dumps(exc))
        except Exception as unpicklable:  # the text in error.json is enough
            error["unpicklable"] = f"{type(unpicklable).__name__}: {unpicklable}"
    _write("error.json", json.dumps(error).encode())
    print(formatted, file=sys.stderr, end="" if formatted.endswith("\n") else "\n")
    return 1


def _load(task: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The function and the call's (args, kwargs), from the pickles the client sent."""
    if task.get("communipute") != FORMAT:
        raise Refused(f"task.json is not a communipute call (format {task.get('communipute')!r})")
    wanted = tuple(task.get("python") or ())
    if tuple(sys.version_info[:2]) != wanted:
        raise Refused(
            "the pickles were made on Python {} and this host's runner is Python {}: "
            "pickles don't cross Python versions".format(
                ".".join(map(str, wanted)), ".".join(map(str, sys.version_info[:3]))
            )
        )
    import cloudpickle  # type: ignore[import-untyped]  # noqa: F401  # the pickles refer to it

    path = FUNCTION_INLINE if os.path.exists(FUNCTION_INLINE) else FUNCTION_INPUT
    with open(path, "rb") as handle:
        function = pickle.load(handle)  # noqa: S301  # the renter's own, sent with the job
    if "call_b64" in task:
        call = base64.b64decode(task["call_b64"])
    else:
        with open(os.path.join(INPUTS, task["call_file"]), "rb") as handle:
            call = handle.read()
    args, kwargs = pickle.loads(call)  # noqa: S301  # likewise
    return function, args, kwargs


def main() -> int:
    with open(os.path.join(INPUTS, "task.json"), encoding="utf-8") as handle:
        task = json.load(handle)
    as_json = task.get("results") == "json"
    pickler: Any = None
    try:
        function, args, kwargs = _load(task)
        if not as_json:
            import cloudpickle

            pickler = cloudpickle
    except Refused as exc:
        return _fail("load", exc, f"{exc}\n", None)
    except Exception as exc:
        return _fail("load", exc, traceback.format_exc(), None)
    try:
        value = function(*args, **kwargs)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are its results too
        # The traceback from the function's frame on (this file's own frame left out).
        inner = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        formatted = "".join(traceback.format_exception(type(exc), exc, inner))
        return _fail("call", exc, formatted, pickler)
    try:
        if pickler is not None:
            _write("result.pkl", pickler.dumps(value))
        else:
            _write("result.json", json.dumps(value, allow_nan=False).encode())
    except Exception as exc:
        return _fail("result", exc, traceback.format_exc(), None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
