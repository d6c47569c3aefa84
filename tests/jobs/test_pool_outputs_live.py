"""Issue 15's airlock end to end: a job of a pool that keeps its outputs and logs, run by a real
agent in a real container on the pool's host, through a real daphne. Its outputs and its log
land on the pool's own store (moto's S3 at BLOB_TEST_S3_ENDPOINT) and none of their bytes on
the central store or in the database; the renter's download is refused; a steward refuses one
output, which stays undownloadable, and approves the other, which the agent reads back from
the pool's store and uploads with tus, and the renter downloads the very bytes.

The host is put in the pool directly (``organisation`` set, ``visibility`` private): the
enrollment path of pools is built beside this. Needs PostgreSQL, Redis, Docker and S3; marked
``slow``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from accounts.models import Membership, MembershipRole, Organisation, PoolLogs, User
from blobs.models import Blob, BlobHolding
from config.transactions import durable_call
from hosts.models import Host, HostVisibility
from jobs.models import Job, JobLogChunk, JobOutput, JobStatus, ReleaseStatus
from ledger.services import wallet_credit
from tests.conftest import _user
from tests.jobs.real_ledger import RealLedger
from tests.live import RATES, Beat, LiveServer, RealAgent, live_server_start, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.s3,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(600),
]

RESULT = "ward,count\n7,42\n"
SUMMARY = "patient,diagnosis\nJane Doe,confidential\n"
SECRET_LOG = "reading the ward's records: Jane Doe"
CODE = f"""\
open('/outputs/result.csv', 'w').write({RESULT!r})
open('/outputs/summary.csv', 'w').write({SUMMARY!r})
print({SECRET_LOG!r}, flush=True)
"""
KEY_ID, SECRET = "st-marys-key", "st-marys-secret"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def s3() -> Any:
    return boto3.client(
        "s3",
        endpoint_url=os.environ["BLOB_TEST_S3_ENDPOINT"],
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )


@pytest.fixture
def bucket() -> str:
    name = f"st-marys-{uuid.uuid4().hex[:12]}"
    s3().create_bucket(Bucket=name)
    return name


@pytest.fixture
def server(tmp_path: Path, settings: Any) -> Iterator[LiveServer]:
    live = live_server_start(tmp_path, settings, JOB_LEASE_SECONDS=30, JOB_PREPARE_MAX_SECONDS=600)
    yield live
    live.kill()
    print(f"--- daphne ---\n{live.log_tail()}")


@pytest.fixture
def pool(bucket: str, alice: User, hana: User) -> Organisation:
    org = Organisation.objects.create(
        name="St Mary's",
        pool_output_store={
            "endpoint_url": os.environ["BLOB_TEST_S3_ENDPOINT"],
            "bucket": bucket,
            "prefix": "cp/",
            "region": "",
        },
        pool_logs=PoolLogs.STORE,
        pool_airlock=True,
    )
    Membership.objects.create(user=alice, organisation=org)
    Membership.objects.create(user=hana, organisation=org, role=MembershipRole.ADMIN)
    RealLedger().fund_organisation(org, 50_000_000)  # it pays for its pool jobs
    return org


@pytest.fixture
def agent(
    server: LiveServer,
    pool: Organisation,
    tmp_path: Path,
    hana: User,
    client_for: Callable[[User], Any],
) -> Iterator[RealAgent]:
    token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
    env = {
        "COMMUNIPUTE_SLOTS": "1",
        "COMMUNIPUTE_POOL_STORE_ACCESS_KEY_ID": KEY_ID,
        "COMMUNIPUTE_POOL_STORE_SECRET_ACCESS_KEY": SECRET,
    }
    real = RealAgent(tmp_path / "host", server.url, token.json()["token"], "docker", env)
    Host.objects.filter(pk=real.host_id).update(
        organisation=pool, visibility=HostVisibility.PRIVATE, **RATES
    )
    yield real
    real.kill()
    real.containers_remove()
    print(f"--- agent ---\n{real.log_path.read_text()[-4000:]}")


def stored(bucket: str) -> dict[str, str]:
    client = s3()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        for item in listed
    }


def central_bytes(blob_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in blob_dir.rglob("*") if path.is_file())


def test_a_pool_jobs_outputs_reach_the_renter_only_after_a_stewards_approval(
    server: LiveServer,
    agent: RealAgent,
    pool: Organisation,
    bucket: str,
    alice: User,
    client_for: Callable[[User], Any],
    tmp_path: Path,
) -> None:
    # given: alice is funded; sam is the pool's data steward; the pool host is online
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=500_000_000,
        key="pool-outputs-live-fund",
        reason="test",
        source="purchase",
    )
    sam = _user("sam")
    Membership.objects.create(user=sam, organisation=pool, is_steward=True)
    renter, steward = client_for(alice), client_for(sam)
    agent.start()

    with Beat() as beat:
        # when: alice's job runs in the pool
        response = renter.post(
            "/api/v1/jobs/",
            {
                "code": CODE,
                "host": agent.host_id,
                "pool": pool.pk,
                "cpus": 1,
                "memory_mb": 512,
                "timeout_seconds": 300,
                "max_cost_micros": 50_000_000,
            },
            format="json",
        )
        assert response.status_code == 201, response.json()
        job_id = int(response.json()["id"])
        wait_for(
            lambda: Job.objects.filter(pk=job_id, hold_released_at__isnull=False).exists(),
            f"job {job_id} settled",
            300,
        )
        job = Job.objects.get(pk=job_id)
        assert job.status == JobStatus.SUCCEEDED, (job.status, job.status_reason)

        # then: outputs and log are on the pool's store, none of their bytes on the server's
        prefix = f"cp/jobs/{job_id}/1/"
        assert stored(bucket) == {
            f"{prefix}outputs/result.csv": RESULT,
            f"{prefix}outputs/summary.csv": SUMMARY,
            f"{prefix}log": SECRET_LOG + "\n",
        }
        blob_dir = tmp_path / "media" / "blobs"
        for text in (RESULT, SUMMARY, SECRET_LOG):
            assert text.encode() not in central_bytes(blob_dir)
        assert Blob.objects.filter(sha256__in=[sha(RESULT), sha(SUMMARY)]).count() == 0
        assert JobLogChunk.objects.filter(attempt__job_id=job_id).count() == 0
        assert job.attempts.get().log_bytes == len(SECRET_LOG) + 1
        logs = renter.get(f"/api/v1/jobs/{job_id}/logs/")
        assert (logs.status_code, logs.json()["error"]["code"]) == (409, "log_not_kept")
        listing = renter.get(f"/api/v1/jobs/{job_id}/outputs/").json()["results"]
        assert [(o["name"], o["sha256"], o["location"]) for o in listing] == [
            ("result.csv", sha(RESULT), "pool"),
            ("summary.csv", sha(SUMMARY), "pool"),
        ]
        refused_download = renter.get(f"/api/v1/jobs/{job_id}/outputs/result.csv")
        assert refused_download.status_code == 409

        # when: alice asks for both; sam refuses the summary and approves the result
        for name in ("result.csv", "summary.csv"):
            asked = renter.post(f"/api/v1/jobs/{job_id}/outputs/{name}/release/")
            assert asked.json()["release_status"] == "requested", asked.json()
        requests = steward.get(f"/api/v1/organisations/{pool.pk}/releases/?status=requested")
        ids = {row["name"]: row["id"] for row in requests.json()["results"]}
        refusal = steward.post(
            f"/api/v1/organisations/{pool.pk}/releases/{ids['summary.csv']}/refuse/",
            {"note": "row-level patient data"},
            format="json",
        )
        approval = steward.post(
            f"/api/v1/organisations/{pool.pk}/releases/{ids['result.csv']}/approve/",
            {"note": "aggregate counts"},
            format="json",
        )
        assert (refusal.status_code, approval.status_code) == (200, 200)

        # then: the agent carries the approved one over; alice downloads the very bytes
        wait_for(
            lambda: JobOutput.objects.filter(
                pk=ids["result.csv"], release_status=ReleaseStatus.RELEASED
            ).exists(),
            "the approved output released",
            120,
        )
        download = renter.get(f"/api/v1/jobs/{job_id}/outputs/result.csv")
        assert download.status_code == 200
        assert b"".join(download.streaming_content) == RESULT.encode()
        assert BlobHolding.objects.filter(user=alice, blob__sha256=sha(RESULT)).exists()
        summary = renter.get(f"/api/v1/jobs/{job_id}/outputs/summary.csv")
        assert (summary.status_code, summary.json()["error"]["fields"]) == (
            409,
            {"release_status": ["refused"]},
        )
        assert SUMMARY.encode() not in central_bytes(blob_dir)
        assert Blob.objects.filter(sha256=sha(SUMMARY)).count() == 0
        # (the outputs' steps: the trail holds the job's own entries too)
        kinds = list(
            pool.audit_events.filter(kind__startswith="output.")
            .order_by("id")
            .values_list("kind", flat=True)
        )
        assert kinds == [
            "output.kept",
            "output.kept",
            "output.release_requested",
            "output.release_requested",
            "output.release_refused",
            "output.release_approved",
            "output.released",
        ]
    assert beat.errors == []
