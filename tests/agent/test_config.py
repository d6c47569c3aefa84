import json
import stat
from pathlib import Path

import pytest

from agent.config import (
    ConfigError,
    config_install_id_ensure,
    config_load,
    config_path_default,
    config_save_enrollment,
    server_identity,
    slots_default,
)


def _write(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data))


def test_file_then_environment_then_flags(tmp_path):
    # given
    path = tmp_path / "agent.json"
    _write(path, {"server": "http://file:8000", "runner_image": "from-file", "slots": 2})
    env = {"COMMUNIPUTE_RUNNER_IMAGE": "from-env", "COMMUNIPUTE_SLOTS": "3"}

    # when
    config = config_load(path, env=env, overrides={"slots": 4, "work_dir": None})

    # then
    assert config.server == "http://file:8000"
    assert config.runner_image == "from-env"
    assert (config.slots, config.slots_effective) == (4, 4)
    assert config.websocket_url == "ws://file:8000/ws/agent/"
    assert config_load(path, env=env).slots == 3
    assert config_load(path, env={}).slots == 2


def test_the_old_max_jobs_names_still_set_the_slots(tmp_path):
    path = tmp_path / "agent.json"
    _write(path, {"max_concurrent_jobs": 2})

    assert config_load(path, env={}).slots == 2
    assert config_load(path, env={"COMMUNIPUTE_MAX_JOBS": "5"}).slots == 5
    # the new name wins over the old one
    both = {"COMMUNIPUTE_MAX_JOBS": "5", "COMMUNIPUTE_SLOTS": "6"}
    assert config_load(path, env=both).slots == 6


@pytest.mark.parametrize(
    ("cpus", "memory_mb", "slots"),
    [(8, 16384, 8), (8, 4096, 2), (1, 512, 1), (2, 100_000, 2), (128, 10**7, 64)],
)
def test_the_automatic_slots_give_each_a_core_and_2_gb(cpus, memory_mb, slots):
    assert slots_default(cpus, memory_mb) == slots


def test_unset_slots_are_automatic_and_within_bounds(tmp_path):
    config = config_load(tmp_path / "none.json", env={})

    assert config.slots == 0
    assert config.slots_effective == slots_default()
    assert 1 <= config.slots_effective <= 64


def test_the_server_identity_is_a_digest_of_its_url(tmp_path):
    one = config_load(tmp_path / "a.json", env={}, overrides={"server": "http://a:8000/"})
    other = config_load(tmp_path / "b.json", env={}, overrides={"server": "http://b:8000"})

    assert one.server_id == server_identity("http://a:8000") != other.server_id
    assert len(one.server_id) == 16
    assert server_identity("") == ""


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
    assert len(saved.install_id) == 32
    assert json.loads(path.read_text()) == {
        "credential": "cph_secret",
        "host_id": 7,
        "install_id": saved.install_id,
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
        ({}, {"COMMUNIPUTE_SLOTS": "many"}, "slots has an invalid value"),
        ({"slots": 65}, {}, "slots must be within 1..64"),
        ({"slots": -1}, {}, "slots must be within 1..64"),
        ({}, {"COMMUNIPUTE_MAX_JOBS": "100"}, "slots must be within 1..64"),
        ({"install_id": "short"}, {}, "install_id must be 8 to 64"),
        ({"install_id": "has spaces in it"}, {}, "install_id must be 8 to 64"),
        ({"pip_cert": "/no/such/bundle.pem"}, {}, "is not a file"),
        ({}, {"COMMUNIPUTE_ALLOW_NETWORK": "perhaps"}, "allow_network"),
        ({"cache_max_mb": -1}, {}, "cache_max_mb must be within 0.."),
        ({}, {"COMMUNIPUTE_FETCH_MAX_MB": "0"}, "fetch_max_mb must be within 1.."),
        ({"fetch_allow_networks": ["10.0.0.0/33"]}, {}, "'10.0.0.0/33' is not a CIDR"),
        ({}, {"COMMUNIPUTE_FETCH_ALLOW_NETWORKS": "lan"}, "'lan' is not a CIDR"),
        ({"fetch_allow_networks": "10.0.0.0/8,"}, {}, None),
        ({"fetch_allow_networks": [1]}, {}, "list of strings"),
        ({"fetch_allow_hosts": ["bad host"]}, {}, "'bad host' is not a host name"),
        ({"fetch_allow_hosts": ["x.org"] * 101}, {}, "more than 100 entries"),
    ],
)
def test_bad_settings_are_named(tmp_path, content, env, message):
    path = tmp_path / "agent.json"
    _write(path, content)

    if message is None:  # a control: the same shape is accepted
        config_load(path, env=env)
        return
    with pytest.raises(ConfigError, match=message):
        config_load(path, env=env)


def test_fetch_settings_from_the_file_and_the_environment(tmp_path):
    path = tmp_path / "agent.json"
    _write(path, {"fetch_allow_networks": ["10.0.0.0/8"], "cache_max_mb": 0})
    env = {
        "COMMUNIPUTE_FETCH_ALLOW_HOSTS": "Data.Example.org, *.lab.example",
        "COMMUNIPUTE_FETCH_MAX_MB": "64",
    }

    config = config_load(path, env=env)

    assert config.fetch_allow_networks == ("10.0.0.0/8",)
    assert config.fetch_allow_hosts == ("data.example.org", "*.lab.example")
    assert (config.cache_max_mb, config.fetch_max_mb) == (0, 64)
    defaults = config_load(tmp_path / "none.json", env={})
    assert (defaults.cache_max_mb, defaults.fetch_max_mb) == (10240, 5120)
    assert defaults.fetch_allow_networks == defaults.fetch_allow_hosts == ()


def test_a_file_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text("{")

    with pytest.raises(ConfigError, match="not valid JSON"):
        config_load(path, env={})


def test_an_enrollment_without_an_install_id_gets_one_once(tmp_path):
    # given: a config written before install ids
    path = tmp_path / "agent.json"
    _write(path, {"server": "http://s", "host_id": 3, "credential": "cph_x"})
    config = config_load(path, env={})
    assert config.install_id == ""

    # when
    ensured = config_install_id_ensure(config)
    again = config_install_id_ensure(config_load(path, env={}))

    # then: written down, private, and kept
    assert len(ensured.install_id) == 32
    assert again.install_id == ensured.install_id
    assert json.loads(path.read_text())["install_id"] == ensured.install_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_install_id_that_cannot_be_stored_is_derived_from_the_credential(tmp_path, monkeypatch):
    # given a config its agent can read but not write (another user's file)
    path = tmp_path / "agent.json"
    _write(path, {"server": "http://s", "host_id": 3, "credential": "cph_x"})

    def refused(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("agent.config.file_write_private", refused)

    # when
    first = config_install_id_ensure(config_load(path, env={}))
    second = config_install_id_ensure(config_load(path, env={}))
    other = tmp_path / "other.json"
    _write(other, {"server": "http://s", "host_id": 3, "credential": "cph_y"})
    another = config_install_id_ensure(config_load(other, env={}))

    # then: the same id at every start, one per enrollment, and the file untouched
    assert first.install_id == second.install_id != another.install_id
    assert len(first.install_id) == 32
    assert "install_id" not in json.loads(path.read_text())
