"""Warm environments: the shared wheelhouse and the LRU pruning of cached environments."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agent.runtime import DockerRuntime, Outcome
from agent.runtime.docker_runtime import ENV_PREFIX
from agent.runtime.envcache import CachedEnv, UseRecord, prune_plan
from agent.runtime.hardening import (
    LABEL_ENV_DATA,
    download_kwargs,
    env_key,
    install_kwargs,
    owner_labels,
    wheelhouse_name,
)
from tests.agent.test_runtime_docker import (
    env_forget,
    run_to_end,
    runtime_for,
    spec_for,
    wheelhouse_removed,
)
from tests.agent.test_runtime_hardening import _settings, _spec

MB = 1024 * 1024


def env(key: str, size_mb: int, last_used: float, is_in_use: bool = False) -> CachedEnv:
    return CachedEnv(key, f"data-{key}", size_mb * MB, last_used, is_in_use)


def test_the_least_recently_used_go_first_until_the_rest_fit():
    envs = [env("a", 40, 300.0), env("b", 40, 100.0), env("c", 40, 200.0)]

    assert [e.key for e in prune_plan(envs, 50 * MB)] == ["b", "c"]
    assert [e.key for e in prune_plan(envs, 80 * MB)] == ["b"]
    assert prune_plan(envs, 120 * MB) == []


def test_one_in_use_is_never_pruned_even_when_the_oldest():
    envs = [env("old", 40, 1.0, is_in_use=True), env("new", 40, 2.0)]

    assert [e.key for e in prune_plan(envs, 0)] == ["new"]


def test_the_use_record_keeps_the_last_use_and_forgets(tmp_path):
    record = UseRecord(tmp_path)

    record.touch("a", 10.0)
    record.touch("b", 20.0)
    record.touch("a", 30.0)
    record.forget(["b"])

    assert record.read() == {"a": 30.0}
    assert UseRecord(tmp_path).read() == {"a": 30.0}  # on disk, for the next agent process


def test_a_damaged_use_record_reads_as_empty(tmp_path):
    (tmp_path / "env-cache.json").write_text('{"a": "yesterday", "b": true, "c": 5}')
    assert UseRecord(tmp_path).read() == {"c": 5.0}
    (tmp_path / "env-cache.json").write_text("[1, 2")
    assert UseRecord(tmp_path).read() == {}


def test_the_install_from_the_wheelhouse_has_no_network_and_reads_it_only():
    # given
    settings = _settings(pip_cert_path=Path("/etc/ssl/certs/corp.pem"))
    spec = _spec(requirements=["six==1.17.0"])

    # when
    kwargs = install_kwargs(spec, settings, "env-1", {}, wheelhouse="wh-1")

    # then
    assert kwargs["network_mode"] == "none"
    assert kwargs["volumes"] == {
        "env-1": {"bind": "/opt/env", "mode": "rw"},
        "wh-1": {"bind": "/wheelhouse", "mode": "ro"},
    }
    assert "PIP_CERT" not in kwargs["environment"]
    assert kwargs["command"][-9:] == [
        "--no-warn-script-location",
        "--no-index",
        "--find-links",
        "/wheelhouse",
        "--only-binary=:all:",
        "--target",
        "/opt/env",
        "--",
        "six==1.17.0",
    ]


def test_the_download_fills_the_wheelhouse_with_wheels_only_through_the_hosts_index():
    # given
    settings = _settings(
        pip_index_url="https://pypi.corp.example/simple",
        pip_cert_path=Path("/etc/ssl/certs/corp.pem"),
        install_network="pip-only",
    )

    # when
    kwargs = download_kwargs(_spec(requirements=["six"]), settings, "wh-1", {"x": "1"})

    # then
    assert kwargs["network_mode"] == "pip-only"
    assert kwargs["volumes"] == {
        "wh-1": {"bind": "/wheelhouse", "mode": "rw"},
        "/etc/ssl/certs/corp.pem": {"bind": "/etc/communipute/pip-ca.pem", "mode": "ro"},
    }
    assert kwargs["environment"]["PIP_CERT"] == "/etc/communipute/pip-ca.pem"
    assert kwargs["environment"]["PIP_INDEX_URL"] == "https://pypi.corp.example/simple"
    assert kwargs["command"][3:5] == ["65534:65534", "/wheelhouse"]
    assert kwargs["command"][5:] == [
        "download",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--only-binary=:all:",
        "--dest",
        "/wheelhouse",
        "--",
        "six",
    ]
    assert (kwargs["cap_drop"], kwargs["cap_add"]) == (["ALL"], ["CHOWN", "SETUID", "SETGID"])


def test_each_index_has_its_own_wheelhouse():
    assert wheelhouse_name(_settings()) == wheelhouse_name(_settings())
    mirror = _settings(pip_index_url="https://mirror.example/simple")
    assert wheelhouse_name(mirror) != wheelhouse_name(_settings())
    assert wheelhouse_name(mirror).startswith("communipute-wheelhouse-")


# --- with Docker ---------------------------------------------------------------------------


def fake_env(runtime: DockerRuntime, key: str, size_mb: int) -> str:
    """A cached environment as _env_install leaves one: a data volume holding ``size_mb`` and
    the pointer volume naming it. Returns the data volume's name."""
    data = f"{ENV_PREFIX}{key}-{uuid.uuid4().hex[:8]}"
    labels = {"communipute.env": key, **owner_labels(runtime.settings)}
    runtime.client.volumes.create(name=data, labels=labels)
    runtime.client.containers.run(
        runtime.settings.image,
        ["sh", "-c", f"head -c {size_mb * MB} /dev/urandom > /opt/env/blob"],
        volumes={data: {"bind": "/opt/env", "mode": "rw"}},
        network_mode="none",
        remove=True,
    )
    runtime.client.volumes.create(
        name=ENV_PREFIX + key, labels={LABEL_ENV_DATA: data, "communipute.env": key}
    )
    return data


def volume_names(runtime: DockerRuntime) -> set[str]:
    return {volume.name for volume in runtime.client.volumes.list()}


@pytest.mark.docker
def test_cached_environments_are_pruned_lru_and_one_in_use_is_kept(tmp_path):
    with runtime_for(tmp_path, env_cache_max_mb=5) as runtime:
        # given: three environments of 3 MB each (9 MB, over the 5 MB cap), "a" the oldest
        # but mounted by a container, then "b", then "c" the newest
        tag = uuid.uuid4().hex[:8]
        keys = {name: f"test{tag}{name}" for name in "abc"}
        data = {name: fake_env(runtime, key, 3) for name, key in keys.items()}
        for when, name in enumerate("abc"):
            runtime._env_uses.touch(keys[name], 1000.0 + when)
        holder = runtime.client.containers.create(
            runtime.settings.image,
            ["true"],
            volumes={data["a"]: {"bind": "/opt/env", "mode": "ro"}},
            network_mode="none",
        )
        try:
            # when
            removed = runtime.env_cache_prune()

            # then: "b" goes (oldest not in use); "a" + "c" are 6 MB, "a" can't go, "c" does
            names = volume_names(runtime)
            assert removed == [keys["b"], keys["c"]]
            assert {data["a"], ENV_PREFIX + keys["a"]} <= names
            assert not {data["b"], data["c"], ENV_PREFIX + keys["b"]} & names
            assert set(runtime._env_uses.read()) == {keys["a"]}
        finally:
            holder.remove(force=True)
            for name in (data["a"], ENV_PREFIX + keys["a"]):
                runtime.client.volumes.get(name).remove(force=True)


@pytest.mark.docker
def test_another_agents_environments_are_left_to_it(tmp_path):
    with runtime_for(tmp_path, env_cache_max_mb=0) as mine, runtime_for(tmp_path / "b") as theirs:
        key = f"test{uuid.uuid4().hex[:8]}"
        data = fake_env(theirs, key, 1)
        try:
            assert key not in mine.env_cache_prune()
            assert data in volume_names(mine)
        finally:
            for name in (data, ENV_PREFIX + key):
                mine.client.volumes.get(name).remove(force=True)


@pytest.mark.docker
def test_a_close_requirement_set_installs_from_the_wheelhouse_without_network(tmp_path):
    wheelhouse = f"test-wheelhouse-{uuid.uuid4().hex[:8]}"
    with (
        runtime_for(tmp_path, wheelhouse_volume=wheelhouse) as online,
        wheelhouse_removed(online),
    ):
        # given: one job's install filled the wheelhouse with six and attrs
        both = ("six==1.17.0", "attrs==24.2.0")
        for requirements in (both, ("six==1.17.0",), ("attrs==24.2.0",)):
            env_forget(online, requirements)
        first = online.prepare(spec_for("print(1)\n", requirements=both))
        assert first.failure is None, first.install_log
        assert b"Saved /wheelhouse/six-1.17.0-py2.py3-none-any.whl" in first.install_log

        # when: a close set is installed by an agent whose install step can reach no index
        offline_settings = {"wheelhouse_volume": wheelhouse, "install_network": "none"}
        with runtime_for(tmp_path / "offline", **offline_settings) as offline:
            spec = spec_for(
                "import six\nprint(six.__version__)\n", attempt=2, requirements=both[:1]
            )
            finished = run_to_end(offline, spec)
            prepared_attrs = offline.prepare(
                spec_for("print(1)\n", attempt=3, requirements=both[1:])
            )

        # then
        assert finished.outcome == Outcome("succeeded", "exit code 0", 0)
        assert finished.logs == b"1.17.0\n"
        assert prepared_attrs.failure is None
        for requirements in (both, ("six==1.17.0",), ("attrs==24.2.0",)):
            env_forget(online, requirements)


@pytest.mark.docker
def test_without_the_wheelhouse_an_index_it_cannot_reach_fails_as_the_hosts_fault(tmp_path):
    # the control for the test above: the same offline install step with no wheelhouse
    with runtime_for(tmp_path, wheelhouse_volume="", install_network="none") as runtime:
        requirements = ("six==1.17.0",)
        env_forget(runtime, requirements)
        prepared = runtime.prepare(spec_for("print(1)\n", requirements=requirements))
        assert prepared.failure is not None
        assert prepared.failure.fault == "host"
        key = env_key(runtime.image_id(), requirements, runtime.settings)
        assert runtime.client.volumes.list(filters={"label": f"communipute.env={key}"}) == []
