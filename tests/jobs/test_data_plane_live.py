"""Issue 13's data plane end to end: a 1 GiB input uploaded over tus through a real daphne with
the connection cut mid-PATCH and resumed (its RSS sampled: bench/uploads.py), then read by a
real agent's job in a real container that checks the input's sha256 itself; a second job with
the same input on the same host is not downloaded again, and an input one byte different is.

The daphne is ``tests.live.LiveServer`` with the local-disk blob store under the test's folder;
the agent is the real one (``RealAgent``, Docker runtime, one slot); what beat runs is ``Beat``.
Each download is a ``GET /api/v1/blobs/fetch/…`` in daphne's access log, with its length.
Needs PostgreSQL, Redis and Docker; marked ``slow`` (about two minutes here).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from accounts.services import api_token_create
from bench.uploads import RSS_GROWTH_LIMIT, TusClient, parts, upload_measured
from blobs.models import Blob, BlobHolding
from config.transactions import durable_call
from hosts.models import Host
from jobs.models import Job, JobStatus
from ledger.services import wallet_credit
from tests.jobs.test_agent_jobs_end_to_end import complete_log
from tests.live import RATES, Beat, LiveServer, RealAgent, live_server_start, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(900),
]

GIB = 1024 * 1024 * 1024
FETCH = re.compile(r'"GET /api/v1/blobs/fetch/[^" ]+[^"]*" (\d{3}) (\d+)')

# The job hashes its input in the container and fails unless it is what the renter uploaded.
CHECK = """\
import hashlib, os, sys
digest = hashlib.sha256()
with open('/inputs/data.bin', 'rb') as handle:
    for block in iter(lambda: handle.read(1 << 20), b''):
        digest.update(block)
print('size', os.path.getsize('/inputs/data.bin'), 'sha256', digest.hexdigest(), flush=True)
sys.exit(0 if digest.hexdigest() == {expected!r} else 3)
"""


@pytest.fixture
def server(tmp_path: Path, settings: Any) -> Iterator[LiveServer]:
    live = live_server_start(
        tmp_path,
        settings,
        JOB_LEASE_SECONDS=30,
        JOB_PREPARE_MAX_SECONDS=600,
        BLOB_QUOTA_BYTES=4 * GIB,
    )
    yield live
    live.kill()
    print(f"--- daphne ---\n{live.log_tail()}")


@pytest.fixture
def agent(
    server: LiveServer, tmp_path: Path, hana: User, client_for: Callable[[User], Any]
) -> Iterator[RealAgent]:
    token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
    env = {"COMMUNIPUTE_SLOTS": "1", "COMMUNIPUTE_CACHE_MAX_MB": "4096"}
    real = RealAgent(tmp_path / "host", server.url, token.json()["token"], "docker", env)
    Host.objects.filter(pk=real.host_id).update(**RATES)
    yield real
    real.kill()
    real.containers_remove()
    print(f"--- agent ---\n{real.log_path.read_text()[-4000:]}")


def one_byte_changed(size: int) -> Iterator[tuple[int, bytes]]:
    """``bench.uploads.parts`` with the very last byte flipped."""
    for offset, data in parts(size):
        if offset + len(data) == size:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        yield offset, data


def fetches(server: LiveServer) -> list[int]:
    """The length of each blob download daphne served (its access log), in order."""
    found = FETCH.findall(server.log.read_text(errors="replace"))
    assert all(status in {"200", "206"} for status, _ in found), found
    return [int(length) for _, length in found]


def run_checked(renter: Any, sha256: str, expected: str) -> Job:
    """Submit the checking job over ``sha256`` (expecting it to hash to ``expected``); wait."""
    body = {
        "code": CHECK.format(expected=expected),
        "inputs": [{"path": "data.bin", "sha256": sha256}],
        "placement": "auto",
        "cpus": 1,
        "memory_mb": 512,
        "timeout_seconds": 300,
        "max_cost_micros": 50_000_000,
    }
    response = renter.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    job_id = int(response.json()["id"])
    wait_for(
        lambda: Job.objects.filter(pk=job_id, hold_released_at__isnull=False).exists(),
        f"job {job_id} settled",
        600,
    )
    return Job.objects.get(pk=job_id)


def test_a_1_gib_input_goes_up_resumed_and_into_a_container_and_is_cached_by_digest(
    server: LiveServer,
    agent: RealAgent,
    alice: User,
    client_for: Callable[[User], Any],
    tmp_path: Path,
) -> None:
    # given: alice is funded and has a token; the host is online
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=500_000_000,
        key="data-plane-live-fund",
        reason="test",
        source="purchase",
    )
    _, token = api_token_create(user=alice, name="data plane")
    renter = client_for(alice)
    blob_dir = tmp_path / "media" / "blobs"
    assert server.process is not None
    agent.start()

    with Beat() as beat:
        # when: 1 GiB in 8 MiB PATCHes, one cut halfway through its body and resumed
        upload = upload_measured(TusClient(server.port, token), server.process.pid, GIB, blob_dir)
        print(upload.report())

        # then: stored as stated, held by alice, daphne's memory flat
        assert upload.ok, upload.report()
        assert upload.resumed_from < upload.cut_at
        assert upload.growth < RSS_GROWTH_LIMIT, upload.report()
        assert BlobHolding.objects.filter(user=alice, blob__sha256=upload.sha256).exists()
        assert fetches(server) == []

        # when: a job reads it on the host
        first = run_checked(renter, upload.sha256, upload.sha256)

        # then: the container hashed the very bytes; the host downloaded them once, whole
        assert first.status == JobStatus.SUCCEEDED, (first.status, first.status_reason)
        assert complete_log(renter, first.pk) == f"size {GIB} sha256 {upload.sha256}\n"
        assert fetches(server) == [GIB]
        [cached] = list((agent.root / "work").rglob(upload.sha256))
        inode = cached.stat().st_ino

        # when: a second job on the same host with the same input
        second = run_checked(renter, upload.sha256, upload.sha256)

        # then: it ran from the host's cache: no download, the same cached file
        assert second.status == JobStatus.SUCCEEDED, (second.status, second.status_reason)
        assert fetches(server) == [GIB]
        assert cached.stat().st_ino == inode

        # when: the same file with its last byte changed
        client = TusClient(server.port, token)
        changed = hashlib.sha256()
        for _, data in one_byte_changed(GIB):
            changed.update(data)
        location = client.create(GIB, changed.hexdigest())
        for offset, data in one_byte_changed(GIB):
            assert client.patch(location, offset, data) == offset + len(data)
        third = run_checked(renter, changed.hexdigest(), changed.hexdigest())

        # then: that one is downloaded, and the container saw the changed bytes
        assert third.status == JobStatus.SUCCEEDED, (third.status, third.status_reason)
        assert complete_log(renter, third.pk) == f"size {GIB} sha256 {changed.hexdigest()}\n"
        assert fetches(server) == [GIB, GIB]
        assert Blob.objects.filter(size=GIB).count() == 2
    assert beat.errors == []
