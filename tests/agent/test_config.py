import json
import stat
from pathlib import Path

import pytest

from agent.config import ConfigError, config_load, config_path_default, config_save_enrollment


def _write(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data))


def test_file_then_environment_then_flags(tmp_path):
    # given
    path = tmp_path / "agent.json"
    _write(
        path, {"server": "http://file:8000", "runner_image": "from-file", "max_concurrent_jobs": 2}
    )
    env = {"COMMUNIPUTE_RUNNER_IMAGE": "from-env", "COMMUNIPUTE_MAX_JOBS": "3"}

    # when
    config = config_load(path, env=env, overrides={"max_concurrent_jobs": 4, "work_dir": None})

    # then
    assert config.server == "http://file:8000"
    assert config.runner_image == "from-env"
    assert config.max_concurrent_jobs == 4
    assert config.websocket_url == "ws://file:8000/ws/agent/"


def test_the_default_path_honours_the_environment(tmp_path):
    assert (
        config_path_default({"COMMUNIPUTE_AGENT_CONFIG": str(tmp_path / "a.json")})
        == tmp_path / "a.json"
    )
    assert (
        config_path_default({"XDG_CONFIG_HOME": str(tmp_path)})
        == tmp_path / "communipute" / "agent.json"
    )


def test_https_servers_use_wss(tmp_path):
    config = config_load(
        tmp_path / "none.json", env={}, overrides={"server": "https://cp.example.org/"}
    )

    assert config.server == "https://cp.example.org"
    assert config.websocket_url == "wss://cp.example.org/ws/agent/"


def test_saving_the_enrollment_keeps_other_settings_and_is_private(tmp_path):
    # given
    path = tmp_path / "dir" / "agent.json"
    path.parent.mkdir()
    _write(path, {"runner_image": "mine"})
    path.chmod(0o644)
    config = config_load(path, env={})

    # when
    saved = config_save_enrollment(config, server="http://s", host_id=7, credential="cph_secret")

    # then
    assert (saved.host_id, saved.credential, saved.is_enrolled) == (7, "cph_secret", True)
    assert json.loads(path.read_text()) == {
        "credential": "cph_secret",
        "host_id": 7,
        "runner_image": "mine",
        "server": "http://s",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config_load(path, env={}).credential == "cph_secret"
    assert [p.name for p in path.parent.iterdir()] == ["agent.json"]


@pytest.mark.parametrize(
    ("content", "env", "message"),
    [
        ({"surprise": 1}, {}, "unknown settings"),
        ({"server": "ftp://x"}, {}, "http:// or https://"),
        ({}, {"COMMUNIPUTE_MAX_JOBS": "many"}, "max_concurrent_jobs"),
        ({"max_concurrent_jobs": 0}, {}, "at least 1"),
        ({"pip_cert": "/no/such/bundle.pem"}, {}, "is not a file"),
        ({}, {"COMMUNIPUTE_ALLOW_NETWORK": "perhaps"}, "allow_network"),
    ],
)
def test_bad_settings_are_named(tmp_path, content, env, message):
    path = tmp_path / "agent.json"
    _write(path, content)

    with pytest.raises(ConfigError, match=message):
        config_load(path, env=env)


def test_a_file_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text("{")

    with pytest.raises(ConfigError, match="not valid JSON"):
        config_load(path, env={})
