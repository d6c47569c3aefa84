"""A private pool's job networks in real containers (issue 15, docs/pools.md "The run step's
network"): the run step joins a Docker bridge whose egress iptables limits to the pool's
CIDRs. Two data servers in network namespaces of their own (tests/agent/netns.py): the one
the pool lists is reached; the other is not, nor the host itself (its gateway on the bridge,
and its own address inside the listed network), nor DNS; the container has no IPv6. Without
the host's ``pool_job_networks`` the job is refused; with a public network in the list too.
Needs root, iptables and Docker.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.jobrunner.offer import pool_refusal
from agent.runtime import Outcome
from agent.runtime.hardening import JOB_NETWORKS_REFUSAL, job_networks_refusal
from agent.runtime.pool_network import PoolNetworkError, job_network_problem
from agent.runtime.types import PoolSpec
from tests.agent.netns import InsideServer, inside_server
from tests.agent.test_runtime_docker import run_to_end, runtime_for, spec_for

pytestmark = pytest.mark.docker

PROBE = """\
import errno, json, socket, urllib.request
targets = json.loads(%r)
results = {}
for name, (host, port) in targets.items():
    probe = socket.socket()
    probe.settimeout(3)
    try:
        probe.connect((host, port))
        results[name] = "connected"
    except socket.timeout:
        results[name] = "timeout"
    except OSError as exc:
        results[name] = errno.errorcode.get(exc.errno, repr(exc))
    finally:
        probe.close()
try:
    results["body"] = urllib.request.urlopen(%r, timeout=5).read().decode()
except Exception as exc:
    results["body"] = type(exc).__name__
try:
    socket.getaddrinfo("example.com", 443)
    results["dns"] = "resolved"
except OSError:
    results["dns"] = "failed"
results["ipv6"] = open("/proc/net/if_inet6").read().strip()
print(json.dumps(results))
"""


@pytest.fixture
def listed(tmp_path: Path) -> Iterator[InsideServer]:
    with inside_server(tmp_path / "listed") as server:
        server.put("hello.txt", b"inside the pool\n")
        yield server


@pytest.fixture
def unlisted(tmp_path: Path) -> Iterator[InsideServer]:
    with inside_server(tmp_path / "unlisted") as server:
        yield server


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP listener of the host itself on every address."""
    server = socket.create_server(("0.0.0.0", 0))  # noqa: S104  (the point: every address)
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
                connection.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def iptables_rules() -> str:
    found = []
    for chain in ("DOCKER-USER", "INPUT"):
        done = subprocess.run(["iptables", "-w", "10", "-S", chain], capture_output=True, text=True)
        found.append(done.stdout)
    return "\n".join(found)


def probe_spec(listed: InsideServer, unlisted: InsideServer, port: int, gateway: str, **extra):
    targets = {
        "listed": [listed.address, listed.port],
        "unlisted": [unlisted.address, unlisted.port],
        "host_gateway": [gateway, port],
        "host_inside_listed": [listed.host_address, port],
    }
    source = PROBE % (json.dumps(targets), listed.url("hello.txt"))
    return spec_for(source, timeout_seconds=60, **extra)


def test_a_pool_jobs_run_step_reaches_only_the_listed_network(
    tmp_path, listed, unlisted, host_listener
):
    pool_id = 900_000 + secrets.randbelow(99_999)
    pool = PoolSpec(id=pool_id, job_networks=(listed.network,))
    with runtime_for(tmp_path, pool_job_networks=True) as runtime:
        try:
            # given: the network exists with its rules once the job starts
            name = runtime.pool_networks.ensure(pool_id, pool.job_networks)
            network = runtime.client.networks.get(name)
            gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
            spec = probe_spec(listed, unlisted, host_listener, gateway, pool=pool)
            assert pool_refusal(spec, None, runtime) == ""

            # when
            finished = run_to_end(runtime, spec)

            # then
            assert finished.outcome == Outcome("succeeded", "exit code 0", 0), finished.logs
            report = json.loads(finished.logs.strip().splitlines()[-1])
            assert report == {
                "listed": "connected",
                "unlisted": "timeout",
                "host_gateway": "timeout",
                "host_inside_listed": "timeout",
                "body": "inside the pool\n",
                "dns": "failed",
                "ipv6": "",
            }
            bridge = network.attrs["Options"]["com.docker.network.bridge.name"]
            assert network.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"
            rules = iptables_rules()
            assert f"-A DOCKER-USER -i {bridge} -j CP-" in rules
            assert f"-A INPUT -i {bridge} -j CP-" in rules
        finally:
            runtime.pool_networks.remove(pool_id)

    # and: the network and its rules are gone
    assert bridge not in iptables_rules()


def test_the_same_probe_without_the_pool_reaches_nothing(tmp_path, listed, unlisted, host_listener):
    # given: the control: a public job (network none) with the same probe
    with runtime_for(tmp_path, pool_job_networks=True) as runtime:
        spec = probe_spec(listed, unlisted, host_listener, "172.17.0.1")

        # when
        finished = run_to_end(runtime, spec)

    # then
    report = json.loads(finished.logs.strip().splitlines()[-1])
    assert report["listed"] == "ENETUNREACH"
    assert report["body"] == "URLError"


def test_a_host_that_does_not_open_job_networks_refuses_and_starts_nothing(tmp_path, listed):
    pool = PoolSpec(id=7, job_networks=(listed.network,))
    spec = spec_for("print(1)", pool=pool)
    with runtime_for(tmp_path) as runtime:  # pool_job_networks off: the default
        # when
        refusal = pool_refusal(spec, None, runtime)
        prepared = runtime.prepare(spec)
        with pytest.raises(PoolNetworkError, match=JOB_NETWORKS_REFUSAL):
            runtime.start(prepared)

        # then
        assert refusal == f"{JOB_NETWORKS_REFUSAL} (the pool lists {listed.network})"
        assert [c for c in runtime.list_own() if c.role == "run"] == []


@pytest.mark.parametrize(
    ("cidr", "words"),
    [
        ("0.0.0.0/0", "covers loopback"),
        ("8.8.8.0/24", "not a private network"),
        ("127.0.0.0/8", "covers loopback"),
        ("169.254.0.0/16", "covers loopback, link-local"),
        ("fd00::/8", "not an IPv4 network"),
    ],
)
def test_only_private_ipv4_networks_are_opened(tmp_path, cidr, words):
    assert "not a CIDR network" in job_network_problem("10.0.0.0/33")
    assert job_network_problem("10.20.0.0/16") == ""
    assert words in job_network_problem(cidr)
    spec = spec_for("print(1)", pool=PoolSpec(id=7, job_networks=("10.0.0.0/8", cidr)))
    with runtime_for(tmp_path, pool_job_networks=True) as runtime:
        refusal = job_networks_refusal(spec, runtime.settings, runtime.isolation)
        assert refusal.startswith(JOB_NETWORKS_REFUSAL)
        assert words in refusal
        with pytest.raises(PoolNetworkError):
            runtime.pool_networks.ensure(7, spec.pool.job_networks)  # type: ignore[union-attr]
