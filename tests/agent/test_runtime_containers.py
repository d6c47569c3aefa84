"""The sandbox flags of every container the runtime creates, as the engine recorded them.

test_runtime_hardening.py pins the arguments we pass; this reads the real containers back
(``docker inspect``) right after the engine created them, so a flag the engine ignored or a
container created some other way (the install step, the clean-up helper) can't slip through.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.runtime import DockerRuntime, Outcome
from agent.runtime import docker_runtime as docker_runtime_module
from agent.runtime.hardening import (
    ENV_MOUNT,
    LABEL_ROLE,
    OUTPUTS_MOUNT,
    WHEELHOUSE_MOUNT,
    WORK_MOUNT,
)
from agent.runtime.meter import METER_MOUNT
from tests.agent.test_runtime_docker import (
    env_forget,
    run_to_end,
    runtime_for,
    spec_for,
    wheelhouse_removed,
)

pytestmark = pytest.mark.docker

REQUIREMENTS = ("six==1.17.0",)


@contextmanager
def containers_recorded(runtime: DockerRuntime) -> Iterator[list[dict[str, Any]]]:
    """``docker inspect`` of every container the runtime creates, taken at its creation (the
    install and clean-up containers are gone by the time the job ends)."""
    api = runtime.client.api
    created: list[dict[str, Any]] = []
    original = api.create_container

    def create_and_inspect(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        created.append(api.inspect_container(response["Id"]))
        return response

    api.create_container = create_and_inspect
    try:
        yield created
    finally:
        del api.create_container


def role_of(container: dict[str, Any]) -> str:
    return str((container["Config"]["Labels"] or {}).get(LABEL_ROLE, "cleanup"))


def mounts_of(container: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    return {m["Destination"]: (m["Source"], m["RW"]) for m in container["Mounts"]}


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """One job with a requirement run to its end and cleaned up as an unprivileged agent
    would (the agent can't delete what the sandbox user wrote: the clean-up container does)."""
    from agent.runtime.files import tree_remove as real_tree_remove

    calls: list[Path] = []

    def tree_remove_unprivileged(root: Path) -> bool:
        calls.append(root)
        return False if len(calls) == 1 else real_tree_remove(root)

    monkeypatch.setattr(docker_runtime_module, "tree_remove", tree_remove_unprivileged)
    # A wheelhouse of its own, empty: the install downloads into it, then installs from it.
    with (
        runtime_for(
            tmp_path, wheelhouse_volume=f"test-wheelhouse-{uuid.uuid4().hex[:8]}"
        ) as runtime,
        wheelhouse_removed(runtime),
    ):
        env_forget(runtime, REQUIREMENTS)
        spec = spec_for("import six\nprint(six.__version__)\n", requirements=REQUIREMENTS)
        with containers_recorded(runtime) as created:
            finished = run_to_end(runtime, spec)
            runtime.cleanup(finished.handle)
        assert finished.outcome == Outcome("succeeded", "exit code 0", 0)
        assert not finished.handle.attempt_dir.exists()
    return created


def test_every_container_drops_all_capabilities_and_is_limited(recorded):
    # then: one of each kind (two install-step ones: the download into the empty wheelhouse,
    # then the install from it), each hardened
    assert sorted(role_of(c) for c in recorded) == ["cleanup", "install", "install", "run"]
    for container in recorded:
        host = container["HostConfig"]
        flags = {
            "CapDrop": host.get("CapDrop"),
            "SecurityOpt": host.get("SecurityOpt"),
            "Privileged": host.get("Privileged"),
            "ReadonlyRootfs": host.get("ReadonlyRootfs"),
            "Init": host.get("Init"),
            "has PidsLimit": (host.get("PidsLimit") or 0) > 0,
            "has Memory": (host.get("Memory") or 0) > 0,
            "no swap": host.get("MemorySwap") == host.get("Memory"),
            "has NanoCpus": (host.get("NanoCpus") or 0) > 0,
        }
        assert flags == {
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges:true"],
            "Privileged": False,
            "ReadonlyRootfs": True,
            "Init": True,
            "has PidsLimit": True,
            "has Memory": True,
            "no swap": True,
            "has NanoCpus": True,
        }, role_of(container)


def test_the_run_container_has_no_network_no_root_and_read_only_packages(recorded):
    # given
    run = next(c for c in recorded if role_of(c) == "run")
    host = run["HostConfig"]

    # then
    assert run["Config"]["User"] == "65534:65534"
    assert (host["NetworkMode"], host["CapAdd"], host["IpcMode"]) == ("none", None, "private")
    assert host["Tmpfs"] == {"/tmp": "rw,noexec,nosuid,nodev,size=256m"}
    mounts = mounts_of(run)
    assert sorted(mounts) == sorted([WORK_MOUNT, OUTPUTS_MOUNT, ENV_MOUNT, METER_MOUNT])
    assert {path: writable for path, (_, writable) in mounts.items()} == {
        WORK_MOUNT: True,
        OUTPUTS_MOUNT: True,
        ENV_MOUNT: False,
        METER_MOUNT: True,  # the CPU meter (agent/runtime/meter.py), beside work/ and outputs/
    }
    work_source = Path(mounts[WORK_MOUNT][0])
    assert Path(mounts[METER_MOUNT][0]) == work_source.parent / "meter"


def test_the_install_container_sees_only_its_environment_volume(recorded):
    # given: the download into the empty wheelhouse (it has no six: the agent, root, can see
    # that in the volume and does not try without network first), then the install from it
    installs = [c for c in recorded if role_of(c) == "install" and ENV_MOUNT in mounts_of(c)]
    downloads = [c for c in recorded if role_of(c) == "install" and ENV_MOUNT not in mounts_of(c)]
    run = next(c for c in recorded if role_of(c) == "run")
    assert (len(installs), len(downloads)) == (1, 1)

    for install in [*installs, *downloads]:
        # then: root only to hand the fresh volume over, with no capability beyond that; and
        # no way into the job's work or outputs directories
        host, mounts = install["HostConfig"], mounts_of(install)
        assert install["Config"]["User"] == "0:0"
        assert sorted(host["CapAdd"]) == ["CHOWN", "SETGID", "SETUID"]
        assert mounts_of(run)[WORK_MOUNT][0] not in {source for source, _ in mounts.values()}
        assert mounts_of(run)[METER_MOUNT][0] not in {source for source, _ in mounts.values()}
    for install in installs:
        # the install from the wheelhouse: no network, the wheelhouse read-only
        mounts = mounts_of(install)
        assert install["HostConfig"]["NetworkMode"] == "none"
        assert set(mounts) == {ENV_MOUNT, WHEELHOUSE_MOUNT}
        assert (mounts[ENV_MOUNT][1], mounts[WHEELHOUSE_MOUNT][1]) == (True, False)
        assert mounts[ENV_MOUNT][0] == mounts_of(run)[ENV_MOUNT][0]
    # the download: network, the wheelhouse writable, never the environment
    mounts = mounts_of(downloads[0])
    assert downloads[0]["HostConfig"]["NetworkMode"] == "bridge"
    assert set(mounts) - {WHEELHOUSE_MOUNT, "/etc/communipute/pip-ca.pem"} == set()
    assert mounts[WHEELHOUSE_MOUNT] == (mounts_of(installs[0])[WHEELHOUSE_MOUNT][0], True)
    assert "download" in downloads[0]["Args"]
    assert "--only-binary=:all:" in downloads[0]["Args"]


def test_the_cleanup_container_has_only_dac_override_and_no_network(recorded):
    cleanup = next(c for c in recorded if role_of(c) == "cleanup")
    host = cleanup["HostConfig"]
    assert (cleanup["Config"]["User"], host["CapAdd"], host["NetworkMode"]) == (
        "0:0",
        ["DAC_OVERRIDE"],
        "none",
    )
