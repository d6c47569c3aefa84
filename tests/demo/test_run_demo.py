"""The supervisor's decisions, without starting anything: the environment it gives the
children and the job runtime it picks for the local agent."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bench._processes import script_module

run_demo = script_module("run_demo")


@pytest.fixture
def demo(tmp_path: Path) -> object:
    return run_demo.Demo(bind="127.0.0.1", port=8123, var_dir=tmp_path)


def test_children_get_the_embedded_default_whatever_the_shell_says(
    demo: object, tmp_path: Path
) -> None:
    # given: a shell set up for production
    shell = {
        "PATH": "/usr/bin",
        "DATABASE_URL": "postgres://db/prod",
        "REDIS_URL": "redis://cache/0",
        "CELERY_BROKER_URL": "redis://cache/1",
        "DEBUG": "0",
    }

    # when
    env = run_demo.server_env(demo, shell)

    # then
    assert "REDIS_URL" not in env
    assert "CELERY_BROKER_URL" not in env
    assert env["PATH"] == "/usr/bin"
    assert env["DATABASE_URL"] == f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    assert (env["DEBUG"], env["PAYMENT_PROVIDER"], env["DEMO_PAYMENTS_ENABLED"]) == (
        "1",
        "demo",
        "1",
    )
    # the local agent may run jobs unisolated; the demo renter may use it (shown in red)
    assert env["PLACEMENT_ALLOW_UNISOLATED_HOSTS"] == "1"
    assert (env["COMMUNIPUTE_VAR_DIR"], env["PUBLIC_URL"]) == (
        str(tmp_path),
        "http://127.0.0.1:8123",
    )


def test_the_secret_key_is_made_once_per_machine_and_kept_private(
    demo: object, tmp_path: Path
) -> None:
    # when
    first = run_demo.server_env(demo, {})["SECRET_KEY"]
    again = run_demo.server_env(demo, {})["SECRET_KEY"]

    # then
    assert first == again
    assert len(first) >= 50
    assert stat.S_IMODE((tmp_path / "secret-key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("image", "env", "isolates_nothing", "says"),
    [
        (
            "communipute/runner:latest",
            {
                "COMMUNIPUTE_JOB_MANAGER": "docker",
                "COMMUNIPUTE_RUNNER_IMAGE": "communipute/runner:latest",
            },
            False,
            "Docker containers",
        ),
        (
            "",
            {"COMMUNIPUTE_JOB_MANAGER": "process", "COMMUNIPUTE_ALLOW_UNISOLATED": "1"},
            True,
            "make runner-image",
        ),
        (
            None,
            {"COMMUNIPUTE_JOB_MANAGER": "process", "COMMUNIPUTE_ALLOW_UNISOLATED": "1"},
            True,
            "Docker does not answer",
        ),
    ],
)
def test_the_agent_runs_jobs_in_docker_when_it_can_and_says_loudly_when_not(
    monkeypatch: pytest.MonkeyPatch,
    image: str | None,
    env: dict[str, str],
    isolates_nothing: bool,
    says: str,
) -> None:
    # given
    monkeypatch.setattr(run_demo, "_docker_image", lambda: image)

    # when
    runtime = run_demo.job_runtime()

    # then
    assert (runtime.env, runtime.isolates_nothing) == (env, isolates_nothing)
    assert says in runtime.note
    assert ("NO ISOLATION" in runtime.note) is isolates_nothing


def test_the_banner_names_the_url_the_logins_and_the_logs(demo: object, tmp_path: Path) -> None:
    # given
    logins = {
        "renter": {"username": "demo-renter", "password": "pw-r"},
        "host": {"username": "demo-host", "password": "pw-h"},
        "staff": {"username": "demo-admin", "password": "pw-s"},
    }
    (tmp_path / "demo-users.json").write_text(json.dumps(logins))
    unisolated = run_demo.JobRuntime({}, "no isolation at all", isolates_nothing=True)

    # when
    text = run_demo.banner(demo, 7, unisolated)
    docker = run_demo.banner(demo, 7, run_demo.JobRuntime({}, "jobs run in Docker"))

    # then
    assert "CommuniPute is running at http://127.0.0.1:8123/" in text
    for role, login in logins.items():
        assert f"{role:<7} {login['username']:<12} password {login['password']}" in text
    assert f"Logs: {tmp_path / 'logs'}/" in text
    assert "host 7" in text
    assert "WARNING: NO ISOLATION AT ALL" in text
    assert "WARNING" not in docker


def test_the_demo_has_a_short_dispute_window_of_its_own(demo: object) -> None:
    # when: a production shell's window is never what the demo uses
    env = run_demo.server_env(demo, {"EARNINGS_DISPUTE_WINDOW_SECONDS": "604800"})
    custom = run_demo.server_env(demo, {"DEMO_EARNINGS_DISPUTE_WINDOW_SECONDS": "30"})

    # then
    assert (env["EARNINGS_DISPUTE_WINDOW_SECONDS"], env["EARNINGS_MATURE_INTERVAL_SECONDS"]) == (
        "120",
        "30",
    )
    assert custom["EARNINGS_DISPUTE_WINDOW_SECONDS"] == "30"


@pytest.mark.parametrize(
    ("image", "environ", "answer", "builds", "outcome"),
    [
        ("communipute/runner:latest", {}, None, True, "present"),
        (None, {}, "y", True, "no_docker"),
        ("", {}, "", True, "built"),
        ("", {}, "y", False, "failed"),
        ("", {}, "n", True, "declined"),
        ("", {"DEMO_BUILD_RUNNER_IMAGE": "1"}, None, True, "built"),
        ("", {"DEMO_BUILD_RUNNER_IMAGE": "0"}, "y", True, "declined"),
        ("", {}, None, True, "not_asked"),
    ],
)
def test_a_first_run_offers_to_build_the_runner_image_and_never_fails_without_docker(
    monkeypatch: pytest.MonkeyPatch,
    demo: object,
    capsys: pytest.CaptureFixture[str],
    image: str | None,
    environ: dict[str, str],
    answer: str | None,
    builds: bool,
    outcome: str,
) -> None:
    # given
    monkeypatch.setattr(run_demo, "_docker_image", lambda: image)
    built: list[Path] = []

    def build(log: Path) -> bool:
        built.append(log)
        return builds

    # when
    did = run_demo.runner_image_offer(
        demo, environ, ask=None if answer is None else (lambda _: answer), build=build
    )

    # then
    assert did == outcome
    assert bool(built) is (outcome in ("built", "failed"))
    said = capsys.readouterr().out
    if outcome in ("no_docker", "failed", "declined", "not_asked"):
        assert "without isolation" in said.lower()
        assert "make runner-image" in said or outcome == "failed"
