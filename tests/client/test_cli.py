"""The command's exit codes follow the job's outcome (docs/sdk.md), here against the fake
server; tests/client/test_sdk_live.py runs the command as a subprocess against a real one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from communipute import cli
from communipute.client import Client
from tests.client.fake_groups import FakeGroups
from tests.client.fakes import TOKEN, URL, FakeServer, envelope, job_json


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeServer:
    fake = FakeServer()

    def client(url: str | None = None) -> Client:
        made = Client(URL, TOKEN, transport=fake.transport(), progress=False)
        made._api.sleep = lambda seconds: None
        return made

    monkeypatch.setattr(cli, "Client", client)
    monkeypatch.setenv("COMMUNIPUTE_CONFIG", str(tmp_path / "none.json"))
    return fake


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("succeeded", cli.EXIT_OK),
        ("failed", cli.EXIT_JOB_FAILED),
        ("timed_out", cli.EXIT_JOB_STOPPED),
        ("cancelled", cli.EXIT_JOB_STOPPED),
        ("budget_exhausted", cli.EXIT_JOB_STOPPED),
    ],
)
def test_wait_exits_by_the_jobs_outcome(server, capsys, status, code) -> None:
    server.route("GET", "/api/v1/jobs/7/", [job_json(status="running"), job_json(status=status)])

    assert cli.main(["wait", "7", "--json"]) == code
    assert json.loads(capsys.readouterr().out)["status"] == status


def test_giving_up_waiting_is_exit_5_and_says_the_job_goes_on(server, capsys) -> None:
    server.route("GET", "/api/v1/jobs/7/", job_json(status="running"))

    assert cli.main(["wait", "7", "--timeout", "0"]) == cli.EXIT_WAIT_TIMEOUT
    assert "still running" in capsys.readouterr().err


def test_a_refusal_is_exit_3_with_the_servers_code(server, capsys, tmp_path) -> None:
    (tmp_path / "a.py").write_text("print(1)")
    server.route(
        "POST", "/api/v1/jobs/", envelope(402, "insufficient_credits", "Not enough credits.")
    )

    assert cli.main(["run", str(tmp_path / "a.py"), "--max-cost", "9"]) == cli.EXIT_API
    assert "insufficient_credits" in capsys.readouterr().err


def test_usage_errors_are_exit_2(server, capsys, tmp_path, monkeypatch) -> None:
    # a missing script, a cap with too many decimals: nothing sent
    assert cli.main(["run", str(tmp_path / "no.py"), "--max-cost", "1"]) == cli.EXIT_USAGE
    (tmp_path / "a.py").write_text("print(1)")
    assert cli.main(["run", str(tmp_path / "a.py"), "--max-cost", "1e-9"]) == cli.EXIT_USAGE
    assert server.log == []
    # no cap at all: argparse's own usage error
    with pytest.raises(SystemExit) as raised:
        cli.main(["run", str(tmp_path / "a.py")])
    assert raised.value.code == cli.EXIT_USAGE
    # nothing configured
    monkeypatch.setattr(cli, "Client", Client)
    monkeypatch.delenv("COMMUNIPUTE_URL", raising=False)
    monkeypatch.delenv("COMMUNIPUTE_TOKEN", raising=False)
    assert cli.main(["wallet"]) == cli.EXIT_USAGE
    assert "communipute login" in capsys.readouterr().err


def test_run_follow_json_streams_the_log_to_stderr_and_the_job_to_stdout(
    server, capsys, tmp_path
) -> None:
    (tmp_path / "a.py").write_text("print(1)")
    server.route("POST", "/api/v1/jobs/", httpx.Response(201, json=job_json()))
    server.route(
        "GET",
        "/api/v1/jobs/7/logs/",
        [
            {
                "job_id": 7,
                "attempt": 1,
                "offset": 0,
                "next_offset": 2,
                "data": "1\n",
                "truncated": False,
                "is_complete": True,
            },
        ],
    )
    server.route("GET", "/api/v1/jobs/7/", job_json(status="succeeded", attempt=1, exit_code=0))

    code = cli.main(["run", str(tmp_path / "a.py"), "--max-cost", "1", "--follow", "--json"])

    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK
    assert json.loads(out)["status"] == "succeeded"
    assert err.startswith("job 7 queued\n1\njob 7 succeeded (exit 0)")


# --- map ---------------------------------------------------------------------------------------

TASK = """\
import json, os, sys
n = json.load(open(os.path.join(os.environ["COMMUNIPUTE_INPUTS"], "task.json")))
print("got", n, flush=True)
if n == "boom":
    sys.exit(3)
if n != "quiet":
    out = os.path.join(os.environ["COMMUNIPUTE_OUTPUTS"], "result.json")
    json.dump({"n": n}, open(out, "w"))
"""


@pytest.fixture
def mapping(server, tmp_path) -> tuple[FakeGroups, Path, Path]:
    groups = FakeGroups(server, tmp_path / "hosts")
    (tmp_path / "task.py").write_text(TASK)
    return groups, tmp_path / "task.py", tmp_path / "inputs.jsonl"


def test_map_prints_each_tasks_result_in_order_and_exits_0_when_all_succeeded(
    server, capsys, mapping
) -> None:
    groups, script, inputs = mapping
    inputs.write_text('1\n\n{"a": 2}\n"quiet"\n')

    code = cli.main(["map", str(script), "--inputs", str(inputs), "--max-cost", "1", "--json"])

    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["index"] for row in rows] == [0, 1, 2]
    assert [row["result"] for row in rows] == [{"n": 1}, {"n": {"a": 2}}, None]
    assert [row["log"] for row in rows] == [None, None, "got quiet\n"]
    assert rows[0]["status"] == "succeeded"
    assert rows[0]["outputs"][0]["name"] == "result.json"
    assert [t["argument"] for t in groups.only.body["inputs"]] == [1, {"a": 2}, "quiet"]
    assert groups.only.body["max_cost_micros"] == 1_000_000
    assert err.startswith(f"job group {groups.only.id}: 3 tasks\n")
    assert f"job group {groups.only.id} finished: 3 succeeded; cost" in err


def test_map_exits_1_when_a_task_failed_and_says_so_in_its_line(server, capsys, mapping) -> None:
    _, script, inputs = mapping
    inputs.write_text('1\n"boom"\n')

    code = cli.main(["map", str(script), "--inputs", str(inputs), "--per-task-max-cost", "0.5"])

    out, _ = capsys.readouterr()
    assert code == cli.EXIT_JOB_FAILED
    assert out.splitlines() == [
        '[0] succeeded: {"n": 1}',
        "[1] failed (exit 3): the script exited with 3",
    ]


def test_maps_exit_code_follows_the_tasks_outcomes() -> None:
    assert cli.map_exit(["succeeded", "succeeded"]) == cli.EXIT_OK
    assert cli.map_exit(["succeeded", "failed", "cancelled"]) == cli.EXIT_JOB_FAILED
    assert cli.map_exit(["succeeded", "timed_out"]) == cli.EXIT_JOB_STOPPED
    assert cli.map_exit(["skipped", "budget_exhausted"]) == cli.EXIT_JOB_STOPPED


def test_map_usage_errors_are_exit_2_and_send_nothing(server, capsys, mapping) -> None:
    _, script, inputs = mapping
    inputs.write_text('1\n{"no": \n')
    assert cli.main(["map", str(script), "--inputs", str(inputs), "--max-cost", "1"]) == 2
    assert "line 2 is not JSON" in capsys.readouterr().err
    inputs.write_text("1\n")
    assert cli.main(["map", str(script), "--inputs", str(inputs)]) == cli.EXIT_USAGE
    assert "cost cap" in capsys.readouterr().err
    inputs.write_text("\n")
    assert cli.main(["map", str(script), "--inputs", str(inputs), "--max-cost", "1"]) == 2
    assert "has no inputs" in capsys.readouterr().err
    assert server.log == []


def test_an_interrupted_map_cancels_its_group_and_exits_130(
    server, capsys, mapping, monkeypatch
) -> None:
    groups, script, inputs = mapping
    groups.auto = False
    inputs.write_text("1\n2\n")

    def client(url: str | None = None) -> Client:
        made = Client(URL, TOKEN, transport=server.transport(), progress=False)

        def interrupted(seconds: float) -> None:
            raise KeyboardInterrupt

        made._api.sleep = interrupted
        return made

    monkeypatch.setattr(cli, "Client", client)

    code = cli.main(["map", str(script), "--inputs", str(inputs), "--max-cost", "1"])

    assert code == cli.EXIT_INTERRUPTED
    assert groups.only.status == "cancelled"
    assert "is cancelled" in capsys.readouterr().err
