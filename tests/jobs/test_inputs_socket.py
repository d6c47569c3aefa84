"""Inputs through the real agent socket: the disk an agent says in hello decides placement, and
the offer it receives carries its inputs, code archive and disk limits in the protocol's shape."""

from __future__ import annotations

import hashlib

import pytest
from channels.db import database_sync_to_async
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from agent.protocol import JobOffer, payload_check
from blobs.models import Blob, BlobHolding, blob_storage_name
from blobs.tokens import blob_token_check
from config.errors import Conflict
from jobs.models import Job
from marketplace.disk import DiskRequest
from tests.hosts.factories import credential_create, host_create
from tests.jobs.helpers import submit
from tests.jobs.test_agent_socket import connected_agent, receive_type

pytestmark = pytest.mark.django_db(transaction=True)


def _hold(user, data: bytes) -> Blob:
    digest = hashlib.sha256(data).hexdigest()
    blob = Blob.objects.create(sha256=digest, size=len(data))
    default_storage.save(blob_storage_name(digest), ContentFile(data))
    BlobHolding.objects.create(user=user, blob=blob, origin="upload")
    return blob


@pytest.fixture(autouse=True)
def store(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def agent_secret(hana):
    host = host_create(hana, name="a", cpus=8)
    return credential_create(host)


async def test_the_offer_over_the_socket_carries_inputs_and_disk(alice, agent_secret, ledger):
    # given: an agent that enforces quotas and allows 10 GB a job; alice holds a blob
    socket, _ = await connected_agent(
        agent_secret, specs_overrides={"disk_quota": True, "job_disk_mb": 10_000}
    )
    await database_sync_to_async(ledger.fund)(alice, 5_000_000)
    blob = await database_sync_to_async(_hold)(alice, b"rows\n")
    remote = "ab" * 32

    # when
    job = await database_sync_to_async(submit)(
        alice,
        inputs=(
            {"path": "rows.txt", "sha256": blob.sha256},
            {"path": "w", "url": "https://example.com/w", "sha256": remote, "size": 9},
        ),
        disk=DiskRequest(work_mb=2048),
        work_exec=True,
    )
    offer = (await receive_type(socket, "job.offer"))["data"]

    # then: the agent's own decoder accepts it, and it says what the job reads and may write
    payload_check(JobOffer, offer, "job.offer")
    attempt_pk = await database_sync_to_async(
        lambda: Job.objects.get(pk=job.pk).attempts.get().pk
    )()
    store_ref, url_ref = offer["inputs"]
    grant = blob_token_check(store_ref["url"].removeprefix("/api/v1/blobs/fetch/"), purpose="fetch")
    assert (grant.sha256, grant.scope) == (blob.sha256, f"attempt:{attempt_pk}")
    assert (store_ref["source"], store_ref["size"]) == ("store", 5)
    assert url_ref == {
        "path": "w",
        "sha256": remote,
        "size": 9,
        "source": "url",
        "url": "https://example.com/w",
    }
    assert offer["disk"] == {"work_mb": 2048, "outputs_mb": 1024, "tmp_mb": 256, "work_exec": True}
    await socket.disconnect()


async def test_a_host_whose_hello_allows_too_little_disk_is_offered_nothing(
    alice, agent_secret, ledger
):
    # given: the agent allows 1000 MB a job; a default job needs 2304
    socket, _ = await connected_agent(agent_secret, specs_overrides={"job_disk_mb": 1000})
    await database_sync_to_async(ledger.fund)(alice, 5_000_000)

    # when / then
    with pytest.raises(Conflict) as refused:
        await database_sync_to_async(submit)(alice)
    assert refused.value.code == "no_host_fits"
    assert await database_sync_to_async(Job.objects.count)() == 0
    await socket.disconnect()
