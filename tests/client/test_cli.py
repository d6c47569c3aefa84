"""The command's exit codes follow the job's outcome (docs/sdk.md), here against the fake
server; tests/client/test_sdk_live.py runs the command as a subprocess against a real one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from communipute import cli
from communipute.client import Client
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
