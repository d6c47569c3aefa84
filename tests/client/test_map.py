"""``Client.map``, ``@client.function`` and the refusals before anything is sent, against the
fake server, whose tasks the real runner runs here (``fake_groups``): the group's create body
(the runner and the pickled function as code, cloudpickle pinned, each call in its task's
argument or as a blob, the caps), the results in input order, a failure returned with
``return_exceptions`` or raised (the group cancelled), scripts' ``result.json`` and logs."""

# ruff: noqa: S301  # the pickles read here are the test's own

from __future__ import annotations

import base64
import hashlib
import importlib
import inspect
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
import pytest

from communipute import (
    ConfigError,
    PythonVersionMismatch,
    RemoteTraceback,
    TaskError,
    TaskOutput,
)
from communipute import functions as shipping
from tests.client.fake_groups import FakeGroups
from tests.client.fakes import FakeServer

PYTHON = [sys.version_info[0], sys.version_info[1]]
PIN = f"cloudpickle=={cloudpickle.__version__}"


@pytest.fixture(autouse=True)
def _runner_is_this_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hosts' Python is this one here (the version check has its own tests below).
    monkeypatch.setenv(shipping.RUNNER_PYTHON_ENV, f"{PYTHON[0]}.{PYTHON[1]}")


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def groups(server: FakeServer, tmp_path: Path) -> FakeGroups:
    return FakeGroups(server, tmp_path / "hosts")


def created(server: FakeServer) -> Any:
    [body] = server.sent("POST", "/api/v1/job-groups/")
    return body


def square_or_raise(x: int) -> dict[str, int]:
    if x == 3:
        raise ValueError(f"three is not allowed (got {x})")
    return {"x": x, "square": x * x}


def test_a_function_map_sends_one_group_and_returns_the_results_in_input_order(
    server, groups
) -> None:
    # when
    results = server.client().map(
        square_or_raise, [0, 1, 2, 4], max_cost=2, max_parallel=2, cpus=0.5, memory_mb=256
    )

    # then: the return values, in input order
    assert results == [{"x": x, "square": x * x} for x in (0, 1, 2, 4)]

    # the create: the runner and the function as code, cloudpickle pinned, one task a call
    body = created(server)
    assert body["entrypoint"] == "communipute_runner.py"
    assert [f["path"] for f in body["files"]] == [
        "communipute_runner.py",
        "communipute_function.pkl",
    ]
    runner = base64.b64decode(body["files"][0]["content_b64"])
    assert runner == (Path(shipping.__file__).with_name("_task_runner.py")).read_bytes()
    function = pickle.loads(base64.b64decode(body["files"][1]["content_b64"]))
    assert function(5) == {"x": 5, "square": 25}
    assert body["requirements"] == [PIN]
    assert (body["max_cost_micros"], body["task_max_cost_micros"]) == (2_000_000, 500_000)
    assert (body["max_parallel"], body["cpus"], body["memory_mb"]) == (2, 0.5, 256)
    assert body["placement"] == "auto"
    assert body["name"] == "square_or_raise"
    arguments = [task["argument"] for task in body["inputs"]]
    assert [{k: a[k] for k in ("communipute", "python", "results")} for a in arguments] == [
        {"communipute": 1, "python": PYTHON, "results": "json"}
    ] * 4
    calls = [pickle.loads(base64.b64decode(a["call_b64"])) for a in arguments]
    assert calls == [((x,), {}) for x in (0, 1, 2, 4)]
    [(_, _, headers)] = [entry for entry in server.log if entry[0] == "POST"]
    assert headers["idempotency-key"]


def test_return_exceptions_puts_a_task_error_in_the_failed_inputs_place(server, groups) -> None:
    # when
    results = server.client().map(
        square_or_raise, [2, 3, 4], max_cost=1, return_exceptions=True, results="pickle"
    )

    # then: the others' values, and the failure in its place with the remote traceback
    assert results[0] == {"x": 2, "square": 4}
    assert results[2] == {"x": 4, "square": 16}
    error = results[1]
    assert isinstance(error, TaskError)
    assert (error.index, error.status, error.exit_code) == (1, "failed", 1)
    assert (error.error_type, error.message) == ("ValueError", "three is not allowed (got 3)")
    assert error.stage == "call"
    # cloudpickle names code sent by value "<dynamic-code>"; the line is this file's
    lines, first = inspect.getsourcelines(square_or_raise)
    raised_at = first + next(n for n, line in enumerate(lines) if "raise ValueError" in line)
    assert f'File "<dynamic-code>", line {raised_at}, in square_or_raise' in error.traceback
    assert "communipute_runner.py" not in error.traceback  # the runner's own frame left out
    assert isinstance(error.exception, ValueError)
    assert error.exception.args == ("three is not allowed (got 3)",)
    assert error.__cause__ is error.exception
    assert isinstance(error.exception.__cause__, RemoteTraceback)
    assert "task 1 (job " in str(error)
    assert "ValueError: three is not allowed" in str(error)
    assert server.calls("POST", "/api/v1/job-groups/41/cancel/") == []


def test_without_return_exceptions_the_first_failure_in_order_is_raised_and_the_group_cancelled(
    server, groups
) -> None:
    # given: the group's tasks wait for their hosts; index 2 fails first, then index 1
    groups.auto = False
    run = server.client().map_submit(square_or_raise, [1, 3, 3, 5], max_cost=1, results="pickle")
    group_id = run.group.id
    groups.finish(group_id, 2)
    groups.finish(group_id, 0)
    groups.finish(group_id, 1)

    # when / then: index 1 is the first failure in input order, raised once read
    with pytest.raises(TaskError) as raised:
        run.collect(return_exceptions=False)
    assert raised.value.index == 1
    assert isinstance(raised.value.__cause__, ValueError)
    # and the rest of the group was cancelled: nobody reads what it would cost
    assert server.calls("POST", f"/api/v1/job-groups/{group_id}/cancel/") == [
        f"POST /api/v1/job-groups/{group_id}/cancel/"
    ]
    assert groups.only.tasks[3].status == "skipped"


def test_results_are_read_as_they_come_in_order_each_once(server, groups) -> None:
    # given: a group whose results the server shows one more at each read
    groups.auto = False
    client = server.client()
    run = client.map_submit(square_or_raise, [1, 2, 4], max_cost=1)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        index = len(pauses) - 1
        if index < 3:
            groups.finish(run.group.id, index)

    client._api.sleep = sleep

    # when
    values = run.collect(return_exceptions=False)

    # then: each read from where the last ended
    assert values == [{"x": x, "square": x * x} for x in (1, 2, 4)]
    reads = [q for (m, p, _), q in zip(server.log, server.queries, strict=True) if "results" in p]
    assert reads[0] == "index=0&limit=100"
    assert reads[-1].startswith("index=2")
    assert pauses
    assert all(0 < pause <= 2.0 for pause in pauses)


def test_results_json_brings_values_back_as_json_and_sends_no_pickle_back(server, groups) -> None:
    results = server.client().map(
        square_or_raise, [2, 3], max_cost=1, results="json", return_exceptions=True
    )

    assert results[0] == {"x": 2, "square": 4}
    assert isinstance(results[1], TaskError)
    assert results[1].exception is None
    assert results[1].error_type == "ValueError"
    assert sorted(groups.only.tasks[0].outputs) == ["result.json"]
    assert sorted(groups.only.tasks[1].outputs) == ["error.json"]  # no error.pkl with json


def test_a_functions_module_that_is_not_installed_travels_by_value(
    server, groups, tmp_path, monkeypatch
) -> None:
    # given: a module of the renter's own, importable here and nowhere else
    (tmp_path / "mytasks_of_the_renter.py").write_text(
        "import math\n\nFACTOR = 3\n\ndef scaled(x):\n    return math.floor(x * FACTOR)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("mytasks_of_the_renter")

    # when
    results = server.client().map(module.scaled, [1.5, 2], max_cost=1)

    # then: it ran where that module isn't (the fake host's path has nothing of it)
    assert results == [4, 6]
    assert "mytasks_of_the_renter" in shipping.local_modules()
    # registered by value only while pickling
    assert "mytasks_of_the_renter" not in cloudpickle.list_registry_pickle_by_value()


def test_big_calls_and_a_big_function_go_as_blobs(server, groups) -> None:
    # given: a call argument and a function over the inline sizes
    blob = bytes(range(256)) * 512  # 128 KiB

    def size_of(data: bytes, extra: bytes = blob) -> int:
        return len(data) + len(extra)

    # when
    results = server.client().map(size_of, [b"x", blob], max_cost=1)

    # then: the function is a shared input, the big call its task's own, both uploaded
    assert results == [1 + len(blob), 2 * len(blob)]
    body = created(server)
    assert [f["path"] for f in body["files"]] == ["communipute_runner.py"]
    [shared] = body["shared_inputs"]
    assert shared["path"] == "communipute-function.pkl"
    assert shared["sha256"] in server.blobs
    small, big = body["inputs"]
    assert "call_b64" in small["argument"]
    assert "inputs" not in small
    assert big["argument"]["call_file"] == "communipute-call.pkl"
    [own] = big["inputs"]
    assert own["path"] == "communipute-call.pkl"
    assert pickle.loads(server.blobs[own["sha256"]]) == ((blob,), {})


def test_the_caps_per_task_per_group_or_both(server, groups) -> None:
    client = server.client()

    client.map(square_or_raise, [1, 2], per_task_max_cost="0.5")
    client.map(square_or_raise, [1, 2, 4], max_cost_micros=1000, per_task_max_cost_micros=400)
    client.map(square_or_raise, [1, 2, 4], max_cost_micros=1000)

    caps = [
        (b["max_cost_micros"], b["task_max_cost_micros"])
        for b in server.sent("POST", "/api/v1/job-groups/")
    ]
    assert caps == [(1_000_000, 500_000), (1000, 400), (1000, 333)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give the group's cost cap"),
        ({"max_cost": 1, "max_cost_micros": 5}, "not both"),
        ({"max_cost": "0.0000001"}, "not a whole number of micro-credits"),
        ({"max_cost": 1, "results": "yaml"}, "'pickle' or 'json'"),
        ({"max_cost": 1, "requirements": ["cloudpickle==2.0"]}, "leave cloudpickle out"),
        ({"max_cost": 1, "memory_mb": 1.5}, "whole number"),
    ],
)
def test_bad_options_are_refused_before_anything_is_sent(server, options, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        server.client().map(square_or_raise, [1], **options)
    assert server.log == []


def test_an_empty_map_and_a_non_json_script_input_are_refused(server, tmp_path) -> None:
    (tmp_path / "task.py").write_text("print(1)\n")
    client = server.client()
    with pytest.raises(ValueError, match="inputs is empty"):
        client.map(square_or_raise, [], max_cost=1)
    with pytest.raises(ValueError, match=r"inputs\[1\] is not JSON"):
        client.map(tmp_path / "task.py", [1, {1, 2}], max_cost=1)
    assert server.log == []


# --- the Python version check ----------------------------------------------------------------


def test_shipping_a_function_to_hosts_on_another_python_is_refused_at_once(
    server, monkeypatch
) -> None:
    # given: hosts whose runner is another Python than this one
    other = f"{PYTHON[0]}.{PYTHON[1] + 1}"
    monkeypatch.setenv(shipping.RUNNER_PYTHON_ENV, other)

    # when / then: refused before anything is sent, saying why and what to do
    with pytest.raises(PythonVersionMismatch) as refused:
        server.client().map(square_or_raise, [1], max_cost=1)
    assert refused.value.local == tuple(PYTHON)
    assert refused.value.runner == (PYTHON[0], PYTHON[1] + 1)
    text = str(refused.value)
    assert f"Python {PYTHON[0]}.{PYTHON[1]}" in text
    assert f"Python {other}" in text
    assert "pickles don't cross Python versions" in text
    assert "map a script" in text
    assert isinstance(refused.value, ValueError)
    assert server.log == []


def test_the_runners_python_is_bookworms_unless_configured(monkeypatch) -> None:
    monkeypatch.delenv(shipping.RUNNER_PYTHON_ENV)
    assert shipping.runner_python() == shipping.RUNNER_PYTHON == (3, 11)
    assert "bookworm" in (Path(__file__).parents[2] / "scripts/build-runner-image.sh").read_text()
    monkeypatch.setenv(shipping.RUNNER_PYTHON_ENV, "3.12")
    assert shipping.runner_python() == (3, 12)
    monkeypatch.setenv(shipping.RUNNER_PYTHON_ENV, "three")
    with pytest.raises(ConfigError, match=r"major\.minor"):
        shipping.runner_python()


def test_the_runner_refuses_pickles_of_another_python_on_the_host(server, groups) -> None:
    # given: a task whose argument says its pickles were made on another Python (a client
    # that was told the hosts' Python wrongly)
    groups.auto = False
    run = server.client().map_submit(square_or_raise, [2], max_cost=1)
    groups.only.body["inputs"][0]["argument"]["python"] = [PYTHON[0], PYTHON[1] + 1]
    groups.finish(run.group.id, 0)

    # when
    [error] = run.collect(return_exceptions=True)

    # then
    assert isinstance(error, TaskError)
    assert (error.stage, error.exit_code) == ("load", 1)
    assert "pickles don't cross Python versions" in error.message


# --- the decorator ---------------------------------------------------------------------------


def test_a_decorated_function_runs_here_when_called_and_there_with_remote_and_map(
    server: FakeServer, groups: FakeGroups
) -> None:
    client = server.client()

    @client.function(requirements=["numpy==2.1"], cpus=2, max_cost="0.25")
    def cube(x: int) -> int:
        return x**3

    # called: here; remote: one task (a group of one) with the call's cap; map: one group
    assert cube(2) == 8
    assert cube.remote(3) == 27
    assert cube.map([1, 2, 3]) == [1, 8, 27]
    assert cube.map([4], max_cost=5) == [64]

    one, many, capped = server.sent("POST", "/api/v1/job-groups/")
    assert one["requirements"] == ["numpy==2.1", PIN]
    assert (one["cpus"], len(one["inputs"])) == (2.0, 1)
    assert (one["max_cost_micros"], one["task_max_cost_micros"]) == (250_000, 250_000)
    assert (many["max_cost_micros"], many["task_max_cost_micros"]) == (750_000, 250_000)
    assert (capped["max_cost_micros"], capped["task_max_cost_micros"]) == (5_000_000, 250_000)
    assert cube.__name__ == "cube"
    assert repr(cube).startswith("<communipute.RemoteFunction ")
    assert repr(cube).endswith(".cube>")


def test_a_decorated_function_travels_as_the_function_alone(server, groups) -> None:
    # given: a decorated function, and one that calls it
    client = server.client()
    remote = client.function(square_or_raise, max_cost=1)

    def twice(x: int) -> int:
        return int(2 * remote(x)["square"])

    # when / then: mapped, or called from another task, it runs on the host without its client
    assert client.map(remote, [2], max_cost=1) == [{"x": 2, "square": 4}]
    assert client.map(twice, [2], max_cost=1) == [8]
    assert pickle.loads(cloudpickle.dumps(remote)) is square_or_raise


def test_remote_raises_the_calls_failure(server, groups) -> None:
    remote = server.client().function(square_or_raise, max_cost=1, results="pickle")

    with pytest.raises(TaskError) as raised:
        remote.remote(3)
    assert isinstance(raised.value.exception, ValueError)


# --- scripts ---------------------------------------------------------------------------------

SCRIPT = """\
import json, os, sys
with open(os.path.join(os.environ["COMMUNIPUTE_INPUTS"], "task.json")) as handle:
    n = json.load(handle)["n"]
index = int(os.environ["COMMUNIPUTE_TASK_INDEX"])
print("task", index, "n", n, flush=True)
if n < 0:
    raise ValueError(f"negative: {n}")
if n % 2:
    with open(os.path.join(os.environ["COMMUNIPUTE_OUTPUTS"], "result.json"), "w") as out:
        json.dump({"index": index, "double": 2 * n}, out)
"""


def test_a_script_map_returns_result_json_else_the_log_and_a_failure_with_its_traceback(
    server, groups, tmp_path
) -> None:
    # given
    script = tmp_path / "task.py"
    script.write_text(SCRIPT)

    # when
    results = server.client().map(
        script,
        [{"n": 1}, {"n": 2}, {"n": -1}],
        max_cost=1,
        requirements="requests==2.32\n",
        return_exceptions=True,
    )

    # then: result.json parsed; no result.json: exit code and log; a failure: its traceback
    assert results[0] == {"index": 0, "double": 2}
    assert isinstance(results[1], TaskOutput)
    assert (results[1].exit_code, results[1].log) == (0, "task 1 n 2\n")
    error = results[2]
    assert isinstance(error, TaskError)
    assert (error.status, error.exit_code) == ("failed", 1)
    assert (error.error_type, error.message) == ("ValueError", "negative: -1")
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert error.traceback.rstrip().endswith("ValueError: negative: -1")
    assert error.log.startswith("task 2 n -1\n")
    assert error.exception is None

    # the create: the script as the code, each input the task's argument, no cloudpickle
    body = created(server)
    assert body["entrypoint"] == "task.py"
    assert [f["path"] for f in body["files"]] == ["task.py"]
    assert body["requirements"] == ["requests==2.32"]
    assert [task["argument"] for task in body["inputs"]] == [{"n": 1}, {"n": 2}, {"n": -1}]


def test_a_script_map_uploads_its_shared_inputs(server, groups, tmp_path) -> None:
    (tmp_path / "task.py").write_text(
        "import json, os\n"
        "inputs = os.environ['COMMUNIPUTE_INPUTS']\n"
        "words = open(os.path.join(inputs, 'data', 'words.txt')).read().split()\n"
        "n = json.load(open(os.path.join(inputs, 'task.json')))\n"
        "out = os.path.join(os.environ['COMMUNIPUTE_OUTPUTS'], 'result.json')\n"
        "json.dump(words[n], open(out, 'w'))\n"
    )
    words = tmp_path / "words.txt"
    words.write_text("alpha beta gamma")

    results = server.client().map(
        tmp_path / "task.py", [2, 0], shared_inputs=[(words, "data/words.txt")], max_cost=1
    )

    assert results == ["gamma", "alpha"]
    digest = hashlib.sha256(words.read_bytes()).hexdigest()
    assert created(server)["shared_inputs"] == [{"path": "data/words.txt", "sha256": digest}]


def test_a_task_that_never_started_is_a_task_error_with_the_servers_reason(server, groups) -> None:
    groups.auto = False
    run = server.client().map_submit(square_or_raise, [1], max_cost=1)
    run.group.cancel()

    [error] = run.collect(return_exceptions=True)

    assert isinstance(error, TaskError)
    assert (error.status, error.job_id, error.exit_code) == ("skipped", None, None)


class LoadsBadly:
    def __reduce__(self) -> tuple[Any, ...]:
        return (int, ("not a number",))  # pickles on the host, fails to load here


def loads_badly(x: int) -> Any:
    return LoadsBadly() if x else x


def test_a_result_that_will_not_load_here_is_that_tasks_error_not_the_maps(server, groups) -> None:
    results = server.client().map(
        loads_badly, [0, 1], max_cost=1, return_exceptions=True, results="pickle"
    )

    assert results[0] == 0
    error = results[1]
    assert isinstance(error, TaskError)
    assert (error.status, error.stage, error.error_type) == ("succeeded", "result", "ValueError")
    assert "could not be loaded here" in error.reason
    assert isinstance(error.exception, ValueError)


def test_a_task_error_pickles(server, groups) -> None:
    [error] = server.client().map(square_or_raise, [3], max_cost=1, return_exceptions=True)
    again = pickle.loads(pickle.dumps(error))
    assert (again.index, again.error_type, again.traceback) == (0, "ValueError", error.traceback)
    assert str(again) == str(error)
    assert json.dumps(again.summary)
