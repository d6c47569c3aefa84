"""The owner's job socket says why a pool job's log never comes (docs/pools.md, "Logs")."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from accounts.models import Membership, Organisation, PoolLogs
from hosts.models import HostVisibility
from tests.jobs.helpers import submit
from tests.jobs.test_socket import communicator, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool_job(alice, make_host, hana, ledger):
    def make(logs: PoolLogs):
        ledger.fund(alice, 5_000_000)
        org = Organisation.objects.create(name=f"lab {logs}", pool_logs=logs)
        Membership.objects.create(user=alice, organisation=org)
        ledger.fund_organisation(org, 5_000_000)  # it pays for its pool jobs
        host = make_host(hana, visibility=HostVisibility.PRIVATE, organisation=org)
        return submit(alice, host=host, pool_id=org.pk)

    return make


@pytest.mark.parametrize(
    ("logs", "words"),
    [(PoolLogs.STORE, "on its own store"), (PoolLogs.REDACTED, "keeps no log")],
)
async def test_the_socket_says_the_pool_keeps_the_log(pool_job, alice, logs, words):
    job = await sync_to_async(pool_job)(logs)
    socket = communicator(job.pk, await sync_to_async(session_cookie)(alice))

    connected, _ = await socket.connect()
    status = await socket.receive_json_from(timeout=5)
    notice = await socket.receive_json_from(timeout=5)

    assert connected
    assert status["type"] == "job.status"
    assert (notice["type"], notice["job_id"], notice["logs"]) == (
        "log.unavailable",
        job.pk,
        str(logs),
    )
    assert words in notice["message"]
    await socket.disconnect()


async def test_a_pool_job_whose_log_is_central_gets_no_notice(pool_job, alice):
    job = await sync_to_async(pool_job)(PoolLogs.CENTRAL)
    socket = communicator(job.pk, await sync_to_async(session_cookie)(alice))

    await socket.connect()
    await socket.receive_json_from(timeout=5)

    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()
