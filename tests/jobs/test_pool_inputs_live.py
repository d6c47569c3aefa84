"""Inputs stay inside, end to end (issue 15, docs/pools.md "Inputs stay inside"): a real daphne,
a real agent with Docker on a host of the pool, and the pool's data server in a network
namespace of its own (tests/agent/netns.py: a veth pair, a 10.x address nothing but the
pool's rules opens). A pool job names the file by URL and digest; the agent fetches it with
the credential it holds for that prefix, the container checks its sha256 (its exit code),
and afterwards neither the database (a ``pg_dump`` of it, bytea as hex too), the central blob
store's folder nor daphne's log holds a byte of it: a random marker inside the file, and the
credential, are searched for in all three.

Needs root (the namespace), PostgreSQL, Redis and Docker; marked ``slow``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from django.db import connection

from accounts.models import Membership, Organisation, User
from agent.config import server_identity
from agent.runtime.pool_network import PoolNetworks
from blobs.models import Blob, BlobHolding
from config.transactions import durable_call
from hosts.models import Host, HostVisibility
from jobs.models import Job, JobStatus
from ledger.services import wallet_credit
from tests.agent.netns import InsideServer, inside_server
from tests.jobs.real_ledger import RealLedger
from tests.jobs.test_agent_jobs_end_to_end import complete_log
from tests.live import RATES, Beat, LiveServer, RealAgent, live_server_start, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(600),
]

MARKER = ("inside-only-" + os.urandom(12).hex()).encode()
SCAN = os.urandom(200_000) + MARKER + os.urandom(50_000)
SECRET = "Bearer pool-" + os.urandom(12).hex()

CHECK = """\
import hashlib, sys
digest = hashlib.sha256(open('/inputs/scan.bin', 'rb').read()).hexdigest()
print('sha256', digest, flush=True)
sys.exit(0 if digest == {expected!r} else 3)
"""


@pytest.fixture
def inside(tmp_path: Path) -> Iterator[InsideServer]:
    with inside_server(tmp_path / "inside") as server:
        server.put("scans/0042.bin", SCAN)
        yield server


@pytest.fixture
def server(tmp_path: Path, settings: Any) -> Iterator[LiveServer]:
    live = live_server_start(tmp_path, settings, JOB_LEASE_SECONDS=30)
    yield live
    live.kill()
    print(f"--- daphne ---\n{live.log_tail()}")


@pytest.fixture
def pool(alice: User, hana: User, inside: InsideServer) -> Organisation:
    organisation = Organisation.objects.create(
        name="St. Elsewhere", pool_fetch_networks=[inside.network]
    )
    Membership.objects.create(organisation=organisation, user=alice)
    Membership.objects.create(organisation=organisation, user=hana)
    return organisation


@pytest.fixture
def agent(
    server: LiveServer,
    tmp_path: Path,
    hana: User,
    pool: Organisation,
    inside: InsideServer,
    client_for: Callable[[User], Any],
) -> Iterator[RealAgent]:
    # the institution's own machine: it takes its pool's rules and holds the data credential
    credentials = tmp_path / "fetch-credentials.json"
    credentials.write_text(json.dumps({inside.url("scans/"): {"Authorization": SECRET}}))
    credentials.chmod(0o600)
    token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
    env = {
        "COMMUNIPUTE_SLOTS": "1",
        "COMMUNIPUTE_POOL_FETCH": "1",
        "COMMUNIPUTE_FETCH_CREDENTIALS_FILE": str(credentials),
    }
    real = RealAgent(tmp_path / "host", server.url, token.json()["token"], "docker", env)
    # a host of the pool (the enrollment path is the pool's placement work)
    Host.objects.filter(pk=real.host_id).update(
        **RATES, organisation=pool, visibility=HostVisibility.PRIVATE
    )
    yield real
    real.kill()
    real.containers_remove()
    print(f"--- agent ---\n{real.log_path.read_text()[-4000:]}")


def database_dump() -> bytes:
    """Every row of the test database, as ``pg_dump`` writes it (bytea in hex)."""
    db = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": str(db.get("PASSWORD") or "")}
    dumped = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            str(db["HOST"] or "127.0.0.1"),
            "-p",
            str(db["PORT"] or 5432),
            "-U",
            str(db["USER"]),
            str(db["NAME"]),
        ],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return dumped.stdout


def files_holding(folder: Path, needles: list[bytes]) -> list[str]:
    found: list[str] = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found.extend(f"{path}: {needle!r}" for needle in needles if needle in data)
    return found


def test_a_pool_jobs_input_is_fetched_inside_and_no_byte_reaches_the_server(
    server: LiveServer,
    agent: RealAgent,
    alice: User,
    pool: Organisation,
    inside: InsideServer,
    client_for: Callable[[User], Any],
    tmp_path: Path,
) -> None:
    # given: alice, a member, is funded; the pool's host is online
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=500_000_000,
        key="pool-inputs-live-fund",
        reason="test",
        source="purchase",
    )
    RealLedger().fund_organisation(pool, 500_000_000)  # the pool pays for its jobs
    renter = client_for(alice)
    agent.start()
    sha256 = hashlib.sha256(SCAN).hexdigest()
    body = {
        "code": CHECK.format(expected=sha256),
        "pool": pool.pk,
        "inputs": [
            {
                "path": "scan.bin",
                "url": inside.url("scans/0042.bin"),
                "sha256": sha256,
                "size": len(SCAN),
            }
        ],
        "placement": "auto",
        "cpus": 1,
        "memory_mb": 512,
        "timeout_seconds": 300,
        "max_cost_micros": 50_000_000,
    }

    with Beat() as beat:
        # when
        response = renter.post("/api/v1/jobs/", body, format="json")
        assert response.status_code == 201, response.json()
        job_id = int(response.json()["id"])
        wait_for(
            lambda: Job.objects.filter(pk=job_id, hold_released_at__isnull=False).exists(),
            f"job {job_id} settled",
            300,
        )

        # then: it ran on the pool's host; the container saw the very bytes
        job = Job.objects.get(pk=job_id)
        assert job.status == JobStatus.SUCCEEDED, (job.status, job.status_reason)
        assert job.attempts.get().host_id == agent.host_id
        assert complete_log(renter, job_id) == f"sha256 {sha256}\n"
    assert beat.errors == []

    # the agent fetched it from inside, once, with the credential it holds
    [request] = inside.requests()
    assert request["path"] == "/scans/0042.bin"
    assert request["headers"]["Authorization"] == SECRET  # type: ignore[index]

    # and the server holds none of it: no blob, no row, no file, no log line
    assert (Blob.objects.count(), BlobHolding.objects.count()) == (0, 0)
    needles = [MARKER, MARKER.hex().encode(), SECRET.encode()]
    dump = database_dump()
    # the dump is of the right database, and the server does know the input's digest
    assert sha256.encode() in dump
    assert inside.url("scans/0042.bin").encode() in dump
    assert [needle for needle in needles if needle in dump] == []
    assert files_holding(tmp_path / "media", needles) == []
    assert [needle for needle in needles if needle in server.log.read_bytes()] == []
    # nor does the agent write the credential into its own log
    assert SECRET.encode() not in agent.log_path.read_bytes()


REACH = """\
import socket, sys, urllib.request
body = urllib.request.urlopen({listed!r}, timeout=10).read()
probe = socket.socket()
probe.settimeout(3)
try:
    probe.connect(({host!r}, {port}))
    host_reached = True
except OSError:
    host_reached = False
print('listed', len(body), 'host', host_reached, flush=True)
sys.exit(0 if body == {expected!r} and not host_reached else 3)
"""


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP listener of the host itself on every address (its veth end included)."""
    listener = socket.create_server(("0.0.0.0", 0))  # noqa: S104  (the point: every address)
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(2)
    listener.close()


def test_a_pool_jobs_run_step_reaches_its_pools_network_and_not_the_host(
    server: LiveServer,
    tmp_path: Path,
    alice: User,
    hana: User,
    inside: InsideServer,
    host_listener: int,
    client_for: Callable[[User], Any],
) -> None:
    # given: a pool listing the inside server's network for its jobs, and its host allowing it
    pool = Organisation.objects.create(name="Lab", pool_job_networks=[inside.network])
    Membership.objects.create(organisation=pool, user=alice)
    token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
    env = {"COMMUNIPUTE_SLOTS": "1", "COMMUNIPUTE_POOL_JOB_NETWORKS": "1"}
    agent = RealAgent(tmp_path / "host", server.url, token.json()["token"], "docker", env)
    Host.objects.filter(pk=agent.host_id).update(
        **RATES, organisation=pool, visibility=HostVisibility.PRIVATE
    )
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=500_000_000,
        key="pool-networks-live-fund",
        reason="test",
        source="purchase",
    )
    RealLedger().fund_organisation(pool, 500_000_000)  # the pool pays for its jobs
    inside.put("hello.txt", b"inside\n")
    code = REACH.format(
        listed=inside.url("hello.txt"),
        host=inside.host_address,
        port=host_listener,
        expected=b"inside\n",
    )
    body = {
        "code": code,
        "pool": pool.pk,
        "placement": "auto",
        "cpus": 1,
        "memory_mb": 512,
        "timeout_seconds": 120,
        "max_cost_micros": 50_000_000,
    }
    networks = PoolNetworks(
        docker.from_env(),
        install_id=agent.install_id,
        server_id=server_identity(server.url),
        labels={"communipute.agent": str(agent.host_id)},
    )
    try:
        agent.start()
        with Beat() as beat:
            # when
            response = client_for(alice).post("/api/v1/jobs/", body, format="json")
            assert response.status_code == 201, response.json()
            job_id = int(response.json()["id"])
            wait_for(
                lambda: Job.objects.filter(pk=job_id, hold_released_at__isnull=False).exists(),
                f"job {job_id} settled",
                300,
            )

            # then: the job read the listed server and could not reach the host itself
            job = Job.objects.get(pk=job_id)
            assert job.status == JobStatus.SUCCEEDED, (job.status, job.status_reason)
            assert complete_log(client_for(alice), job_id) == "listed 7 host False\n"
        assert beat.errors == []
        [request] = inside.requests()
        assert request["path"] == "/hello.txt"
    finally:
        agent.kill()
        agent.containers_remove()
        print(f"--- agent ---\n{agent.log_path.read_text()[-4000:]}")
        networks.remove(pool.pk)
