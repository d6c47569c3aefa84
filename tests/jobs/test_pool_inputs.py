"""A pool job's URL inputs at submit (issue 15, docs/pools.md "Inputs stay inside"): public
https as any job, or inside the pool's fetch rules (http too); anything else is refused 400
naming ``inputs[i].url`` and nothing is created. The server fetches none of these URLs.
"""

from __future__ import annotations

import hashlib
import socket

import pytest

from accounts.models import Membership, Organisation
from blobs.models import Blob, BlobHolding
from jobs.inputs import POOL_REFUSAL, PoolFetchRules, url_problem
from jobs.models import InputSource, Job, JobFile, JobInput
from tests.jobs.conftest import Wire
from tests.jobs.helpers import body
from tests.jobs.real_ledger import RealLedger

JOBS = "/api/v1/jobs/"
FUNDS = 5_000_000
DIGEST = hashlib.sha256(b"inside").hexdigest()


@pytest.fixture
def pool(alice) -> Organisation:
    organisation = Organisation.objects.create(
        name="St. Elsewhere",
        pool_fetch_networks=["10.20.0.0/16", "fd00:20::/32"],
        pool_fetch_hosts=["data.elsewhere.internal", "*.lab.elsewhere.internal"],
    )
    Membership.objects.create(organisation=organisation, user=alice)
    RealLedger().fund_organisation(organisation, FUNDS)  # it pays for its pool jobs
    return organisation


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, FUNDS)
    return ledger


@pytest.fixture
def box(make_host, hana):
    return make_host(hana, "box")


@pytest.fixture
def pool_box(make_host, hana, pool):
    """A host of the pool: a pool job is placed only there."""
    return make_host(hana, "pool-box", organisation=pool, visibility="private")


@pytest.fixture
def no_fetching(monkeypatch):
    """The server never fetches a URL input: a connection or a name lookup to anything but
    this machine's own services (PostgreSQL, Redis on loopback) fails the test."""
    opened: list[object] = []
    lookup, connect = socket.getaddrinfo, socket.create_connection

    def guarded(real):
        def call(*args, **kwargs):
            where = args[0][0] if isinstance(args[0], tuple) else args[0]
            if str(where) not in ("127.0.0.1", "localhost", "::1"):
                opened.append(args)
                raise AssertionError(f"the server tried to reach {args!r}")
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(socket, "getaddrinfo", guarded(lookup))
    monkeypatch.setattr(socket, "create_connection", guarded(connect))
    return opened


def url_input(url: str, path: str = "data.csv") -> dict[str, object]:
    return {"path": path, "url": url, "sha256": DIGEST, "size": 6}


def assert_nothing_created(funded, alice, wire: Wire) -> None:
    assert (Job.objects.count(), JobFile.objects.count(), JobInput.objects.count()) == (0, 0, 0)
    assert (Blob.objects.count(), BlobHolding.objects.count()) == (0, 0)
    assert funded.wallets[alice.pk] == FUNDS
    assert funded.keys == []
    assert wire.sent == []


# --- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://10.20.3.4/scans/1.csv",
        "https://10.20.3.4:8443/scans/1.csv",
        "http://[fd00:20::5]/x",
        "http://data.elsewhere.internal/x.csv",
        "https://data.elsewhere.internal/x.csv",
        "http://ct.lab.elsewhere.internal:8080/x",
        "https://example.com/public.csv",  # public https stays allowed, as for any job
    ],
)
def test_a_pool_job_may_name_what_its_pool_allows(
    client_for, alice, pool, pool_box, funded, wire, no_fetching, url
):
    # when
    response = client_for(alice).post(
        JOBS, body(pool=pool.pk, inputs=[url_input(url)]), format="json"
    )

    # then
    assert response.status_code == 201, response.data
    assert response.data["pool"] == pool.pk
    job = Job.objects.get()
    assert job.pool_id == pool.pk
    [row] = job.inputs.all()
    assert (row.source, row.url, row.sha256, row.size, row.blob_id) == (
        InputSource.URL,
        url,
        DIGEST,
        6,
        None,
    )
    assert Blob.objects.count() == 0  # the server keeps the digest and size, no byte
    assert no_fetching == []


# --- refused --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.21.0.1/x", "http:// only to the pool's own networks"),  # not listed
        ("https://10.21.0.1/x", "10.21.0.1 is not in its fetch networks"),
        ("https://192.168.1.10/x", "192.168.1.10 is not in its fetch networks"),
        ("http://example.com/x", "http:// only to the pool's own networks"),  # http to public
        ("http://elsewhere.internal/x", "http:// only"),  # *.lab... is not its parent
        ("http://evil-data.elsewhere.internal/x", "http:// only"),
        ("http://data.elsewhere.internal.evil.com/x", "http:// only"),
    ],
)
def test_a_pool_job_naming_what_its_pool_does_not_allow_is_refused(
    client_for, alice, pool, box, funded, wire, no_fetching, url, why
):
    # when
    response = client_for(alice).post(
        JOBS,
        body(pool=pool.pk, inputs=[url_input("https://example.com/ok", "ok"), url_input(url)]),
        format="json",
    )

    # then
    assert response.status_code == 400, response.data
    error = response.data["error"]
    assert error["code"] == "address_not_allowed"
    [message] = error["fields"]["inputs[1].url"]
    assert message.startswith(POOL_REFUSAL)
    assert why in message
    assert list(error["fields"]) == ["inputs[1].url"]
    assert_nothing_created(funded, alice, wire)


@pytest.mark.parametrize(
    "host_itself",
    ["http://127.0.0.1/x", "http://169.254.169.254/latest/meta-data/", "http://[::1]/x"],
)
def test_a_pool_listing_the_host_itself_still_cannot_open_it(
    client_for, alice, box, funded, wire, no_fetching, host_itself
):
    # given: a pool whose rules cover everything, loopback and link-local included
    everything = Organisation.objects.create(
        name="Careless", pool_fetch_networks=["0.0.0.0/0", "::/0"]
    )
    Membership.objects.create(organisation=everything, user=alice)
    RealLedger().fund_organisation(everything, FUNDS)

    # when
    response = client_for(alice).post(
        JOBS, body(pool=everything.pk, inputs=[url_input(host_itself)]), format="json"
    )

    # then
    assert response.status_code == 400, response.data
    [message] = response.data["error"]["fields"]["inputs[0].url"]
    assert "loopback, link-local or multicast" in message
    assert_nothing_created(funded, alice, wire)


@pytest.mark.parametrize(
    "url",
    ["http://10.20.3.4/x", "https://10.20.3.4/x", "http://data.elsewhere.internal/x"],
)
def test_a_job_outside_the_pool_may_not_name_the_pools_addresses(
    client_for, alice, pool, box, funded, wire, no_fetching, url
):
    # when: the same URL without pool
    response = client_for(alice).post(JOBS, body(inputs=[url_input(url)]), format="json")

    # then
    assert response.status_code == 400, response.data
    assert response.data["error"]["code"] == "invalid_url"
    assert list(response.data["error"]["fields"]) == ["inputs[0].url"]
    assert_nothing_created(funded, alice, wire)


def test_a_non_member_gets_no_pool_rules_and_is_told_only_unknown_pool(
    client_for, mallory, pool, box, ledger, wire, no_fetching
):
    # given
    ledger.fund(mallory, FUNDS)

    # when: mallory names alice's pool and one of its internal addresses, then a pool that
    # does not exist
    inputs = [url_input("http://10.20.3.4/x")]
    response = client_for(mallory).post(JOBS, body(pool=pool.pk, inputs=inputs), format="json")
    missing = client_for(mallory).post(JOBS, body(pool=pool.pk + 99, inputs=inputs), format="json")

    # then: the URL is judged as a public job's; the answer is the same as for no such pool
    assert response.status_code == missing.status_code == 400, response.data
    assert response.data["error"]["fields"]["inputs[0].url"] == ["must be an https:// URL"]
    assert response.data == missing.data
    assert (Job.objects.count(), JobInput.objects.count()) == (0, 0)
    assert ledger.wallets[mallory.pk] == FUNDS
    assert wire.sent == []


# --- the rules as text ------------------------------------------------------------------------


def test_the_rules_skip_malformed_entries_and_match_names_case_insensitively():
    # given
    pool = Organisation(
        pool_fetch_networks=["10.0.0.0/8", "not a network", 12],
        pool_fetch_hosts=["Data.Example.ORG.", "bad host!", "*.Lab.example.org"],
    )

    # when
    rules = PoolFetchRules.of(pool)

    # then
    assert [str(n) for n in rules.networks] == ["10.0.0.0/8"]
    assert rules.hosts == ("data.example.org", "*.lab.example.org")
    assert url_problem("http://DATA.example.org./x", rules) is None
    assert url_problem("http://a.b.lab.example.org/x", rules) is None
    assert url_problem("http://lab.example.org/x", rules) is not None
    assert url_problem("http://10.1.2.3/x", rules) is None
    # a numeric form a resolver reads as an address is not a name the rules can match
    numeric = PoolFetchRules(hosts=("10.1",))
    assert url_problem("http://10.1/x", numeric) is not None
    assert url_problem("ftp://10.1.2.3/x", rules) == "must be an https:// URL"
    assert url_problem("http://user:pw@10.1.2.3/x", rules) is not None
    assert url_problem("http://localhost/x", PoolFetchRules(hosts=("localhost",))) is not None


# --- job groups: each task's own inputs are the pool's too ------------------------------------

GROUPS = "/api/v1/job-groups/"


def group_body(pool_id: int, urls: list[str]) -> dict[str, object]:
    return body(
        pool=pool_id,
        max_cost_micros=2_000_000,
        task_max_cost_micros=1_000_000,
        max_parallel=1,
        inputs=[{"inputs": [url_input(url)]} for url in urls],
    )


def test_a_pool_groups_tasks_may_name_what_the_pool_allows(
    client_for, alice, pool, pool_box, funded, no_fetching
):
    # when: each task reads its own file inside the institution
    response = client_for(alice).post(
        GROUPS,
        group_body(pool.pk, ["http://10.20.3.4/a.csv", "http://data.elsewhere.internal/b.csv"]),
        format="json",
    )

    # then
    assert response.status_code == 201, response.data
    assert response.data["count"] == 2


def test_a_pool_groups_task_naming_what_the_pool_does_not_allow_is_refused_by_its_place(
    client_for, alice, pool, pool_box, funded, wire, no_fetching
):
    # when: the second task's file is on a private address the pool does not list
    response = client_for(alice).post(
        GROUPS,
        group_body(pool.pk, ["http://10.20.3.4/a.csv", "http://192.168.7.7/b.csv"]),
        format="json",
    )

    # then
    assert response.status_code == 400, response.data
    assert list(response.data["error"]["fields"]) == ["inputs[1].inputs[0].url"]
    assert_nothing_created(funded, alice, wire)
