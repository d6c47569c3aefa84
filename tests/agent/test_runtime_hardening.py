"""The exact Docker arguments of the install, run and clean-up containers (no Docker)."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.runtime import DockerRuntime, JobSpec, Prepared, RuntimeSettings
from agent.runtime.hardening import (
    cleanup_kwargs,
    env_key,
    install_kwargs,
    owner_filters,
    run_kwargs,
)
from agent.runtime.meter import WRAPPER
from agent.runtime.reasons import HOST_DISK_REASON, HOST_INDEX_REASON, install_host_problem
from agent.runtime.types import host_fault

WORK_ROOT = Path("/srv/communipute")


def _settings(**overrides):
    fields: dict[str, Any] = {
        "work_root": WORK_ROOT,
        "image": "communipute/runner:latest",
        "agent_marker": "h1",
    }
    fields.update(overrides)
    return RuntimeSettings(**fields)


def _spec(**overrides):
    fields: dict[str, Any] = {
        "job_id": 42,
        "attempt": 2,
        "files": {"main.py": b"print(1)\n"},
        "entrypoint": "main.py",
        "cpus": 1.5,
        "memory_mb": 256,
        "timeout_seconds": 60,
    }
    fields.update(overrides)
    return JobSpec(**fields)


def test_the_run_container_is_locked_down():
    # given
    attempt_dir = WORK_ROOT / "job-42-2"

    # when
    kwargs = run_kwargs(_spec(), _settings(), attempt_dir, "communipute-env-abc-1234")

    # then
    assert kwargs == {
        "image": "communipute/runner:latest",
        # the script under the meter wrapper (agent/runtime/meter.py)
        "command": ["python3", "-c", WRAPPER, "/meter/usage.json", "python3", "main.py"],
        "working_dir": "/work",
        "user": "65534:65534",
        "environment": {
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "COMMUNIPUTE_JOB_ID": "42",
            "COMMUNIPUTE_ATTEMPT": "2",
            "COMMUNIPUTE_OUTPUTS": "/outputs",
            "PYTHONPATH": "/opt/env",
            "PATH": "/opt/env/bin:/usr/local/bin:/usr/bin:/bin",
        },
        "labels": {
            "communipute.job": "42",
            "communipute.attempt": "2",
            "communipute.agent": "h1",
            "communipute.role": "run",
            "communipute.timeout": "60",
            "communipute.memory_mb": "256",
        },
        "hostname": "sandbox",
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,size=256m"},
        "volumes": {
            "/srv/communipute/job-42-2/work": {"bind": "/work", "mode": "rw"},
            "/srv/communipute/job-42-2/outputs": {"bind": "/outputs", "mode": "rw"},
            "/srv/communipute/job-42-2/meter": {"bind": "/meter", "mode": "rw"},
            "communipute-env-abc-1234": {"bind": "/opt/env", "mode": "ro"},
        },
        "mem_limit": "256m",
        "memswap_limit": "256m",
        "nano_cpus": 1_500_000_000,
        "pids_limit": 256,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "privileged": False,
        "init": True,
        "ipc_mode": "private",
        "ulimits": [
            {"Name": "nofile", "Soft": 4096, "Hard": 4096},
            {"Name": "nproc", "Soft": 4096, "Hard": 4096},
            {"Name": "core", "Soft": 0, "Hard": 0},
        ],
        "oom_score_adj": 500,
        "log_config": {"type": "json-file", "config": {"max-size": "33554432", "max-file": "2"}},
    }


def test_a_group_task_gets_its_index_and_the_count_in_its_environment():
    # when
    task = run_kwargs(_spec(task_index=4, task_count=20), _settings(), WORK_ROOT / "j", None)
    alone = run_kwargs(_spec(), _settings(), WORK_ROOT / "j", None)

    # then
    assert task["environment"]["COMMUNIPUTE_TASK_INDEX"] == "4"
    assert task["environment"]["COMMUNIPUTE_TASK_COUNT"] == "20"
    assert "COMMUNIPUTE_TASK_INDEX" not in alone["environment"]
    assert "COMMUNIPUTE_TASK_COUNT" not in alone["environment"]


def test_without_requirements_no_environment_is_mounted():
    kwargs = run_kwargs(_spec(), _settings(), WORK_ROOT / "job-42-2", None)

    assert "/opt/env" not in [mount["bind"] for mount in kwargs["volumes"].values()]
    assert "PYTHONPATH" not in kwargs["environment"]


def test_network_needs_both_the_job_and_the_host_policy():
    # given
    asks, host_allows = _spec(network_allowed=True), _settings(network_allowed=True)
    directory = WORK_ROOT / "job-42-2"

    # when
    modes = [
        run_kwargs(_spec(), host_allows, directory, None)["network_mode"],
        run_kwargs(asks, _settings(), directory, None)["network_mode"],
        run_kwargs(asks, host_allows, directory, None)["network_mode"],
    ]

    # then
    assert modes == ["none", "none", "bridge"]


def test_gpus_become_an_nvidia_device_request():
    kwargs = run_kwargs(_spec(gpus=2), _settings(), WORK_ROOT / "job-42-2", None)

    assert kwargs["device_requests"] == [
        {"Driver": "nvidia", "Count": 2, "Capabilities": [["gpu"]]}
    ]
    assert "device_requests" not in run_kwargs(_spec(), _settings(), WORK_ROOT, None)


def test_the_install_container_honours_the_index_and_the_ca_bundle():
    # given
    settings = _settings(
        pip_index_url="https://pypi.corp.example/simple",
        pip_extra_index_url="https://extra.corp.example/simple",
        pip_cert_path=Path("/etc/ssl/certs/corp.pem"),
    )
    spec = _spec(requirements=["six==1.17.0"])

    # when
    kwargs = install_kwargs(spec, settings, "communipute-env-k-1", {"communipute.job": "42"})

    # then
    assert kwargs["environment"] == {
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIP_INDEX_URL": "https://pypi.corp.example/simple",
        "PIP_EXTRA_INDEX_URL": "https://extra.corp.example/simple",
        "PIP_CERT": "/etc/communipute/pip-ca.pem",
    }
    assert kwargs["volumes"] == {
        "communipute-env-k-1": {"bind": "/opt/env", "mode": "rw"},
        "/etc/ssl/certs/corp.pem": {"bind": "/etc/communipute/pip-ca.pem", "mode": "ro"},
    }
    assert kwargs["command"][-5:] == [
        "--only-binary=:all:",
        "--target",
        "/opt/env",
        "--",
        "six==1.17.0",
    ]
    assert kwargs["command"][3:5] == ["65534:65534", "/opt/env"]
    assert kwargs["network_mode"] == "bridge"
    assert (kwargs["cap_drop"], kwargs["cap_add"]) == (["ALL"], ["CHOWN", "SETUID", "SETGID"])
    assert (kwargs["read_only"], kwargs["privileged"], kwargs["init"]) == (True, False, True)
    assert kwargs["security_opt"] == ["no-new-privileges:true"]


def test_sdists_are_allowed_only_where_the_host_says_so():
    spec = _spec(requirements=["six"])

    allowed = install_kwargs(spec, _settings(install_only_wheels=False), "v", {})

    assert "--only-binary=:all:" not in allowed["command"]


def test_the_environment_key_ignores_order_and_spacing_but_not_the_image_or_index():
    settings = _settings()
    key = env_key("sha256:img", ("six", "tomli>=2"), settings)

    assert env_key("sha256:img", ("tomli >=2", "six"), settings) == key
    assert env_key("sha256:other", ("six", "tomli>=2"), settings) != key
    other_index = _settings(pip_index_url="https://mirror.example/simple")
    assert env_key("sha256:img", ("six", "tomli>=2"), other_index) != key
    sdists = _settings(install_only_wheels=False)
    assert env_key("sha256:img", ("six", "tomli>=2"), sdists) != key
    assert len(key) == 24


class _FakeContainer:
    id = "c0ffee"
    attrs = {"State": {"Pid": 4242}}

    def start(self):
        pass

    def reload(self):
        pass


class _FakeContainers:
    def __init__(self):
        self.created = []

    def create(self, **kwargs):
        self.created.append(kwargs)
        return _FakeContainer()


def test_start_hands_docker_the_hardened_arguments_and_a_per_attempt_name():
    # given
    containers = _FakeContainers()
    runtime = DockerRuntime(_settings(), client=SimpleNamespace(containers=containers))
    spec = _spec(gpus=1)
    prepared = Prepared(spec, WORK_ROOT / "job-42-2", None)

    # when
    handle = runtime.start(prepared)

    # then
    created = containers.created[0]
    name = created.pop("name")
    assert name.startswith("communipute-42-2-run-")
    assert created == run_kwargs(spec, _settings(), WORK_ROOT / "job-42-2", None)
    assert created["device_requests"] == [
        {"Driver": "nvidia", "Count": 1, "Capabilities": [["gpu"]]}
    ]
    assert (handle.ref, handle.pid, handle.timeout_seconds) == ("c0ffee", 4242, 60)


def test_the_cleanup_container_is_root_with_only_dac_override_and_limited():
    # when
    kwargs = cleanup_kwargs(_settings(), WORK_ROOT / "job-42-2")

    # then
    assert kwargs == {
        "image": "communipute/runner:latest",
        "command": ["rm", "-rf", "--", "/attempt/work", "/attempt/outputs", "/attempt/meter"],
        "volumes": {"/srv/communipute/job-42-2": {"bind": "/attempt", "mode": "rw"}},
        "user": "0:0",
        "network_mode": "none",
        "read_only": True,
        "mem_limit": "64m",
        "memswap_limit": "64m",
        "nano_cpus": 1_000_000_000,
        "pids_limit": 16,
        "cap_drop": ["ALL"],
        "cap_add": ["DAC_OVERRIDE"],
        "security_opt": ["no-new-privileges:true"],
        "privileged": False,
        "init": True,
        "ulimits": [
            {"Name": "nofile", "Soft": 4096, "Hard": 4096},
            {"Name": "nproc", "Soft": 4096, "Hard": 4096},
            {"Name": "core", "Soft": 0, "Hard": 0},
        ],
        "log_config": {"type": "json-file", "config": {"max-size": "33554432", "max-file": "2"}},
        "remove": True,
    }


def test_containers_carry_the_install_and_server_labels_and_a_name_of_all_three():
    # given two agents with the same host id: another install, or another server
    mine = _settings(install_id="install-aaaa", server_id="s1")
    others = [
        _settings(install_id="install-bbbb", server_id="s1"),
        _settings(install_id="install-aaaa", server_id="s2"),
    ]
    spec = _spec()

    # when
    labels = run_kwargs(spec, mine, WORK_ROOT / "job-42-2", None)["labels"]
    names = [
        DockerRuntime(settings, client=SimpleNamespace())._name(spec, "run")
        for settings in [mine, *others]
    ]

    # then
    assert labels["communipute.agent"] == "h1"
    assert labels["communipute.install"] == "install-aaaa"
    assert labels["communipute.server"] == "s1"
    assert owner_filters(mine) == [
        "communipute.agent=h1",
        "communipute.install=install-aaaa",
        "communipute.server=s1",
    ]
    assert len(set(names)) == 3  # no agent removes another's container by its name


class _FakeApi:
    def __init__(self) -> None:
        self.filters: list[Any] = []

    def containers(self, all: bool, filters: dict[str, Any]) -> list[Any]:
        self.filters.append(filters)
        return []


def test_reconciliation_asks_the_engine_only_for_this_agents_containers():
    api = _FakeApi()
    runtime = DockerRuntime(
        _settings(install_id="install-aaaa", server_id="s1"), client=SimpleNamespace(api=api)
    )

    runtime.list_own()
    runtime.kill(5, 1)

    assert api.filters == [
        {
            "label": [
                "communipute.agent=h1",
                "communipute.install=install-aaaa",
                "communipute.server=s1",
            ]
        },
        {
            "label": [
                "communipute.agent=h1",
                "communipute.install=install-aaaa",
                "communipute.server=s1",
                "communipute.job=5",
                "communipute.attempt=1",
            ]
        },
    ]


# pip 24's output (trimmed) for the three ways an install fails.
PIP_UNREACHABLE = b"""\
WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after \
connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection \
object at 0x7f>: Failed to establish a new connection: [Errno 111] Connection refused')': \
/simple/six/
ERROR: Could not find a version that satisfies the requirement six (from versions: none)
ERROR: No matching distribution found for six
"""
PIP_NO_SUCH_PACKAGE = b"""\
ERROR: Could not find a version that satisfies the requirement nosuchpackage-xyz (from \
versions: none)
ERROR: No matching distribution found for nosuchpackage-xyz
"""
PIP_DISK_FULL = (
    b"ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device\n"
)
PIP_DNS = (
    b"WARNING: Retrying ... after connection broken by 'NameResolutionError(...: Failed to "
    b"resolve 'pypi.internal' ([Errno -3] Temporary failure in name resolution)\")': /simple/six/\n"
)


def test_pip_output_tells_the_hosts_index_and_disk_from_the_renters_requirement():
    assert install_host_problem(PIP_UNREACHABLE) == HOST_INDEX_REASON
    assert install_host_problem(PIP_DNS) == HOST_INDEX_REASON
    assert install_host_problem(PIP_DISK_FULL) == HOST_DISK_REASON
    assert install_host_problem(PIP_NO_SUCH_PACKAGE) is None
    # a package named like an error is still the renter's: the markers have spaces
    assert (
        install_host_problem(
            PIP_NO_SUCH_PACKAGE.replace(b"nosuchpackage-xyz", b"NewConnectionError")
        )
        is None
    )


def test_a_host_fault_keeps_the_end_of_a_long_detail():
    outcome = host_fault(HOST_INDEX_REASON, "x" * 5000 + "the end")

    assert (outcome.status, outcome.fault, outcome.reason) == ("failed", "host", HOST_INDEX_REASON)
    assert len(outcome.detail) == 2000
    assert outcome.detail.endswith("the end")
