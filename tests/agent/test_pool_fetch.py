"""A pool job's inputs on the agent (issue 15, docs/pools.md "Inputs stay inside"), with real
sockets: a data server in a network namespace of its own, on a 10.x address only the pool's
rules open. The pool's offer fetches and verifies it; without the pool's rule, or on a host
whose owner does not take pools' rules, it is refused; the host's credentials reach only
their prefix and only pool jobs; a pool's files are cached apart; the run step of a pool job
has no network, and a pool that lists job networks is refused by this host.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket

import pytest

from agent.config import ConfigError, config_load, fetch_credentials_read
from agent.jobrunner import blob_cache_from_config
from agent.jobrunner.offer import pool_refusal, spec_from_offer
from agent.jobrunner.runtime_manager import RuntimeJobManager
from agent.runtime import ProcessRuntime, RuntimeSettings
from agent.runtime.blobcache import BlobCache, FetchCredentials, FetchPolicy
from agent.runtime.hardening import JOB_NETWORKS_REFUSAL, run_kwargs
from agent.runtime.inputs import inputs_place
from agent.runtime.types import JobSpecError
from tests.agent.blob_servers import BlobState, blob_server_start, sha256_of, tls_make
from tests.agent.jobrunner_fakes import FAST, FakeLink, log_as_stored, offer
from tests.agent.netns import InsideServer, inside_server
from tests.agent.test_blobcache import LOOPBACK

SECRET = "Bearer pin-" + os.urandom(8).hex()
SCAN = b"patient 0042," + os.urandom(4096)
OLD = b"an older scan"


@pytest.fixture
def inside(tmp_path):
    with inside_server(tmp_path / "inside") as server:
        server.put("scans/0042.bin", SCAN)
        server.put("open/readme.txt", b"public within the institution\n")
        yield server


def pool_of(server: InsideServer, **extra) -> dict[str, object]:
    values: dict[str, object] = {
        "id": 7,
        "fetch_networks": [server.network],
        "fetch_hosts": ["*.pool.test"],
        "job_networks": [],
        "logs": "central",
        "airlock": False,
    }
    values.update(extra)
    return values


def url_input(url: str, data: bytes, path: str = "scan.bin") -> dict[str, object]:
    return {"path": path, "sha256": sha256_of(data), "url": url, "source": "url", "size": len(data)}


def cache_of(tmp_path, *, pool_fetch: bool = True, credentials=None, resolver=None, **policy):
    kwargs = {"resolver": resolver} if resolver is not None else {}
    return BlobCache(
        tmp_path / "work" / "cache" / "blobs",
        max_bytes=100 * 1024 * 1024,
        server="https://cp.example.org",
        policy=FetchPolicy(**policy),
        retry_seconds=0.01,
        pool_fetch=pool_fetch,
        credentials=credentials,
        **kwargs,
    )


def attempt_dir(tmp_path, name: str = "job-7-1"):
    directory = tmp_path / "work" / name
    (directory / "work").mkdir(parents=True, exist_ok=True)
    return directory


# --- the pool's rules open what the host alone refuses ----------------------------------------


def test_a_pool_offer_fetches_its_input_from_inside_and_checks_its_digest(tmp_path, inside):
    # given
    spec = spec_from_offer(
        offer(pool=pool_of(inside), inputs=[url_input(inside.url("scans/0042.bin"), SCAN)])
    )
    cache = cache_of(tmp_path)
    directory = attempt_dir(tmp_path)

    # when
    failure = inputs_place(directory, spec, cache)

    # then
    assert failure is None
    placed = directory / "inputs" / "scan.bin"
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == sha256_of(SCAN)
    # cached apart, under the pool's folder, not in the shared cache
    assert cache.path_of(sha256_of(SCAN), "pool-7").exists()
    assert not cache.path_of(sha256_of(SCAN)).exists()
    [request] = inside.requests()
    assert request["path"] == "/scans/0042.bin"


def test_a_wrong_digest_from_inside_is_refused_and_nothing_is_kept(tmp_path, inside):
    # given: the offer states another file's digest
    other = url_input(inside.url("scans/0042.bin"), b"not the scan")
    other["size"] = len(SCAN)
    spec = spec_from_offer(offer(pool=pool_of(inside), inputs=[other]))
    cache = cache_of(tmp_path)

    # when
    failure = inputs_place(attempt_dir(tmp_path), spec, cache)

    # then
    assert failure is not None
    assert failure.status == "failed"
    assert "its sha256 is" in failure.reason
    assert cache.used_bytes() == 0


def test_a_pool_name_resolving_inside_is_fetched_over_http_with_its_name(tmp_path, inside):
    # given: data.pool.test resolves (the institution's DNS) to the inside server
    def resolver(host, port, **kwargs):
        assert host == "data.pool.test"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (inside.address, port))]

    url = f"http://data.pool.test:{inside.port}/scans/0042.bin"
    spec = spec_from_offer(
        offer(pool=pool_of(inside, fetch_networks=[]), inputs=[url_input(url, SCAN)])
    )

    # when
    failure = inputs_place(attempt_dir(tmp_path), spec, cache_of(tmp_path, resolver=resolver))

    # then
    assert failure is None
    [request] = inside.requests()
    assert request["headers"]["Host"] == f"data.pool.test:{inside.port}"


def test_the_same_url_without_the_pools_rule_is_refused(tmp_path, inside):
    # given: the same input, once as a public job, once in a pool without that network
    item = url_input(inside.url("scans/0042.bin"), SCAN)
    public = spec_from_offer(offer(inputs=[item]))
    elsewhere = spec_from_offer(
        offer(pool=pool_of(inside, fetch_networks=["10.1.0.0/16"]), inputs=[item])
    )
    cache = cache_of(tmp_path)

    # when
    as_public = inputs_place(attempt_dir(tmp_path), public, cache)
    as_elsewhere = inputs_place(attempt_dir(tmp_path), elsewhere, cache)

    # then
    assert as_public is not None
    assert as_public.reason.endswith("only https:// URLs are fetched")
    assert as_elsewhere is not None
    assert "which this host does not fetch from" in as_elsewhere.reason
    assert inside.requests() == []  # neither reached the server


def test_an_https_url_to_the_inside_address_needs_the_pools_rule_too(tmp_path, inside):
    # given: https (the address check, not the scheme, refuses it)
    item = url_input(f"https://{inside.address}:{inside.port}/scans/0042.bin", SCAN)
    spec = spec_from_offer(offer(pool=pool_of(inside, fetch_networks=[]), inputs=[item]))

    # when
    failure = inputs_place(attempt_dir(tmp_path), spec, cache_of(tmp_path))

    # then
    assert failure is not None
    assert "which this host does not fetch from" in failure.reason
    assert "private" in failure.reason
    assert inside.requests() == []


def test_a_host_that_does_not_take_pools_rules_refuses_the_offer_up_front(tmp_path, inside):
    # given: a volunteer's host (pool_fetch off) is offered the pool's job
    spec = spec_from_offer(
        offer(pool=pool_of(inside), inputs=[url_input(inside.url("scans/0042.bin"), SCAN)])
    )
    cache = cache_of(tmp_path, pool_fetch=False)

    # when
    refusal = pool_refusal(spec, cache)
    fetched = inputs_place(attempt_dir(tmp_path), spec, cache)  # and were it fetched anyway

    # then
    assert refusal == (
        "this host does not fetch from its pools' networks (pool_fetch is off): "
        "the input 'scan.bin'"
    )
    assert fetched is not None
    assert "which this host does not fetch from" in fetched.reason
    assert inside.requests() == []
    # public https inputs of a pool job are no reason to refuse it
    public = spec_from_offer(
        offer(pool=pool_of(inside), inputs=[url_input("https://example.org/x", b"x")])
    )
    assert pool_refusal(public, cache) == ""
    assert pool_refusal(spec, cache_of(tmp_path)) == ""


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"])
def test_no_pool_rule_opens_the_host_itself(tmp_path, address):
    # given: a pool whose rules cover everything, and a name of it resolving to the host
    def resolver(host, port, **kwargs):
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, 1, 6, "", (address, port))]

    everything = {"fetch_networks": ["0.0.0.0/0", "::/0"], "fetch_hosts": ["*.pool.test"]}
    literal = f"[{address}]" if ":" in address else address
    pool = {"id": 7, "job_networks": [], "logs": "central", "airlock": False, **everything}
    for url in (f"http://{literal}:8080/x", "http://data.pool.test/x"):
        spec = spec_from_offer(offer(pool=pool, inputs=[url_input(url, b"x")]))

        # when
        failure = inputs_place(attempt_dir(tmp_path), spec, cache_of(tmp_path, resolver=resolver))

        # then
        assert failure is not None, url
        assert "which no pool opens" in failure.reason


# --- credentials held on the host --------------------------------------------------------------


def test_credentials_reach_only_their_prefix(tmp_path, inside, caplog):
    # given
    credentials = FetchCredentials([(inside.url("scans/"), [("Authorization", SECRET)])])
    cache = cache_of(tmp_path, credentials=credentials)
    readme = b"public within the institution\n"
    spec = spec_from_offer(
        offer(
            pool=pool_of(inside),
            inputs=[
                url_input(inside.url("scans/0042.bin"), SCAN),
                url_input(inside.url("open/readme.txt"), readme, "readme.txt"),
                # a sibling whose name starts like the prefix is not under it
                url_input(inside.url("scans-old/0042.bin"), OLD, "old.bin"),
            ],
        )
    )
    inside.put("scans-old/0042.bin", OLD)

    # when
    with caplog.at_level(logging.DEBUG):
        failure = inputs_place(attempt_dir(tmp_path), spec, cache)

    # then
    assert failure is None
    seen = {r["path"]: r["headers"] for r in inside.requests()}
    assert seen["/scans/0042.bin"]["Authorization"] == SECRET
    assert "Authorization" not in seen["/open/readme.txt"]
    assert "Authorization" not in seen["/scans-old/0042.bin"]
    assert SECRET not in caplog.text
    assert SECRET not in repr(cache.credentials)


def test_credentials_are_never_sent_for_a_public_job(tmp_path):
    # given: a loopback https server under the credentials' prefix, which this host allows
    tls = tls_make(tmp_path)
    state = BlobState(blobs={"/b/data": b"data"})
    served = blob_server_start(tls, state)
    try:
        url = f"https://localhost:{served.port}/b/data"
        credentials = FetchCredentials(
            [(f"https://localhost:{served.port}/b/", [("X-Key", SECRET)])]
        )
        cache = BlobCache(
            tmp_path / "cache",
            max_bytes=1 << 20,
            server="https://cp.example.org",
            policy=FetchPolicy(allow_networks=LOOPBACK),
            renter_context=tls.client_context(),
            credentials=credentials,
            pool_fetch=True,
        )
        public = spec_from_offer(offer(inputs=[url_input(url, b"data")]))
        pooled = spec_from_offer(
            offer(
                pool={
                    "id": 3,
                    "fetch_networks": [],
                    "fetch_hosts": [],
                    "job_networks": [],
                    "logs": "central",
                    "airlock": False,
                },
                inputs=[url_input(url, b"data")],
            )
        )

        # when
        assert inputs_place(attempt_dir(tmp_path), public, cache) is None
        assert inputs_place(attempt_dir(tmp_path, "job-8-1"), pooled, cache) is None

        # then: the public job's request had no credential, the pool job's had it
        first, second = state.headers
        assert "X-Key" not in first
        assert second["X-Key"] == SECRET
    finally:
        served.stop()


def test_a_digest_a_pool_fetched_is_no_cache_hit_for_a_job_outside_it(tmp_path, inside):
    # given: the pool's job fetched the scan into this host's cache
    cache = cache_of(tmp_path, allow_networks=(), pool_fetch=True)
    pooled = spec_from_offer(
        offer(pool=pool_of(inside), inputs=[url_input(inside.url("scans/0042.bin"), SCAN)])
    )
    assert inputs_place(attempt_dir(tmp_path), pooled, cache) is None

    # when: a public job states the scan's digest with a URL of its own, or as a store blob
    public = spec_from_offer(
        offer(inputs=[url_input("https://example.invalid/x", SCAN, "stolen.bin")])
    )
    other = attempt_dir(tmp_path, "job-9-1")
    failure = inputs_place(other, public, cache)
    stolen = other / "inputs" / "stolen.bin"

    # then: no hit; it had to fetch its own URL (which fails), and got no byte of the scan
    assert failure is not None
    assert "could not be fetched" in failure.reason or failure.fault == "host"
    assert not stolen.exists()
    assert not cache.path_of(sha256_of(SCAN)).exists()


# --- the host's settings ----------------------------------------------------------------------


def test_the_settings_reach_the_cache(tmp_path):
    # given
    secrets_file = tmp_path / "fetch-credentials.json"
    secrets_file.write_text(json.dumps({"https://data.internal/": {"Authorization": SECRET}}))
    secrets_file.chmod(0o600)
    path = tmp_path / "agent.json"
    path.write_text(
        json.dumps(
            {
                "server": "https://cp.example.org",
                "work_dir": str(tmp_path / "w"),
                "pool_fetch": True,
                "fetch_credentials_file": str(secrets_file),
            }
        )
    )

    # when
    config = config_load(path, env={})
    cache = blob_cache_from_config(config)

    # then
    assert config.pool_fetch is True
    assert cache.pool_fetch is True
    assert cache.credentials.headers_for("https://data.internal/a/b") == {"Authorization": SECRET}
    assert cache.credentials.headers_for("https://data.internal.evil.org/a") == {}
    assert cache.credentials.headers_for("http://data.internal/a") == {}
    assert cache.credentials.headers_for("https://data.internal:8443/a") == {}
    assert SECRET not in repr(config)
    assert config_load(tmp_path / "none.json", env={}).pool_fetch is False  # the default


@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        ({"https://data.internal/": {"Authorization": SECRET}}, 0o644, "readable by others"),
        ({"https://data.internal/": {"Authorization": SECRET}}, 0o640, "readable by others"),
        ({"ftp://data.internal/": {"A": "b"}}, 0o600, "is not an http(s)://host/path prefix"),
        ({"https://data.internal/": {}}, 0o600, "needs 1 to 20 headers"),
        ({"https://data.internal/": {"Authorization": SECRET + "\r\nX: y"}}, 0o600, "one line"),
        ({"https://data.internal/": {"Host": "evil"}}, 0o600, "may not set Host"),
        ({"https://data.internal/": {"Bad Name": "x"}}, 0o600, "bad header name"),
        (["https://data.internal/"], 0o600, "must hold an object"),
    ],
)
def test_a_bad_credentials_file_is_refused_without_showing_a_value(tmp_path, content, mode, words):
    # given
    secrets_file = tmp_path / "fetch-credentials.json"
    secrets_file.write_text(json.dumps(content))
    secrets_file.chmod(mode)

    # when
    with pytest.raises(ConfigError) as refused:
        fetch_credentials_read(str(secrets_file))

    # then
    assert words in str(refused.value)
    assert SECRET not in str(refused.value)


def test_a_missing_or_unparsable_credentials_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        config_load(tmp_path / "none.json", env={"COMMUNIPUTE_FETCH_CREDENTIALS_FILE": "/nope"})
    broken = tmp_path / "broken.json"
    broken.write_text("{" + SECRET)
    broken.chmod(0o600)
    with pytest.raises(ConfigError, match="is not JSON") as refused:
        fetch_credentials_read(str(broken))
    assert SECRET not in str(refused.value)


# --- the pool in the offer, the run step's network --------------------------------------------


@pytest.mark.parametrize(
    ("pool", "words"),
    [
        ({"id": 0}, "pool.id must be a positive"),
        ({"id": True}, "pool.id must be a positive"),
        ({"fetch_networks": ["10.0.0.0/33"]}, "is not a CIDR network"),
        ({"job_networks": ["not a network"]}, "is not a CIDR network"),
        ({"fetch_hosts": ["bad host!"]}, "is not a host name"),
        ({"fetch_hosts": ["x"] * 65}, "at most 64"),
    ],
)
def test_a_bad_pool_in_the_offer_is_refused(pool, words):
    given = {"id": 7, "fetch_networks": [], "fetch_hosts": [], "job_networks": [], **pool}
    with pytest.raises(JobSpecError, match=words):
        spec_from_offer(offer(pool=given))


def test_a_pool_jobs_run_step_has_no_network_whatever_it_asked(tmp_path):
    # given: the host allows network and the job asks for it
    settings = RuntimeSettings(work_root=tmp_path, network_allowed=True)
    limits = {"cpus": 1.0, "memory_mb": 512, "gpus": 0, "timeout_seconds": 60}
    asked = {**limits, "allow_network": True}
    pool = {"id": 7, "fetch_networks": [], "fetch_hosts": [], "job_networks": []}
    public = spec_from_offer(offer(limits=asked))
    pooled = spec_from_offer(offer(limits=asked, pool=pool))

    # when
    public_kwargs = run_kwargs(public, settings, tmp_path, None)
    pooled_kwargs = run_kwargs(pooled, settings, tmp_path, None)

    # then
    assert public_kwargs["network_mode"] == "bridge"
    assert pooled_kwargs["network_mode"] == "none"


async def test_a_pool_listing_job_networks_is_refused_by_this_host(tmp_path):
    # given
    runtime = ProcessRuntime(RuntimeSettings(work_root=tmp_path / "work"), allow_unisolated=True)
    link = FakeLink()
    manager = RuntimeJobManager(runtime, uploader=lambda *a: None, options=FAST)
    await manager.start(link)
    pool = {"id": 7, "fetch_networks": [], "fetch_hosts": [], "job_networks": ["10.9.0.0/16"]}

    # when
    await manager.on_offer(offer(pool=pool))

    # then: a refused rejection (the server moves on to another host), nothing started
    [rejected] = link.of("job.reject")
    assert rejected["code"] == "refused"
    assert rejected["reason"] == f"{JOB_NETWORKS_REFUSAL} (the pool lists 10.9.0.0/16)"
    assert link.of("job.accept") == []
    assert not manager.attempts
    await manager.stop()


async def test_a_pool_job_runs_end_to_end_and_no_message_carries_the_credential(tmp_path, inside):
    # given: the process runtime, a pool job whose script checks the scan's digest
    credentials = FetchCredentials([(inside.url("scans/"), [("Authorization", SECRET)])])
    cache = cache_of(tmp_path, credentials=credentials)
    runtime = ProcessRuntime(RuntimeSettings(work_root=tmp_path / "work"), allow_unisolated=True)
    link = FakeLink()
    manager = RuntimeJobManager(runtime, uploader=lambda *a: None, options=FAST, blob_cache=cache)
    await manager.start(link)
    script = (
        "import hashlib, os, sys\n"
        "data = open(os.path.join(os.environ['COMMUNIPUTE_INPUTS'], 'scan.bin'), 'rb').read()\n"
        f"sys.exit(0 if hashlib.sha256(data).hexdigest() == {sha256_of(SCAN)!r} else 3)\n"
    )
    import base64

    given = offer(
        files=[{"path": "main.py", "content_b64": base64.b64encode(script.encode()).decode()}],
        pool=pool_of(inside),
        inputs=[url_input(inside.url("scans/0042.bin"), SCAN)],
    )

    # when
    await manager.on_offer(given)
    [finished] = await link.next_of("job.finished")

    # then
    assert (finished["status"], finished["exit_code"]) == ("succeeded", 0), log_as_stored(
        link.of("job.log")
    )
    wire = json.dumps([data for _kind, data, _id in link.sent], default=str)
    assert SECRET not in wire
    assert SCAN[:13].decode() not in wire
    await manager.stop()
