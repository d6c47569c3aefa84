"""The host's blob cache and fetcher against a real HTTPS server on loopback (a CA made here):
hits, verification, resume after a cut, LRU eviction, the renter-URL policy and fault kinds."""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from agent.runtime.blobcache import (
    BlobCache,
    FetchCancelled,
    FetchError,
    FetchPolicy,
    address_refusal,
    networks_parse,
)
from agent.runtime.types import InputSpec
from tests.agent.blob_servers import BlobState, blob_server_start, sha256_of, tls_make

LOOPBACK = networks_parse(["127.0.0.0/8", "::1/128"])
DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return tls_make(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def state():
    return BlobState(blobs={"/b/data": DATA})


@pytest.fixture
def served(tls, state):
    server = blob_server_start(tls, state)
    yield server
    server.stop()


def cache_for(tmp_path: Path, tls, served, **kwargs) -> BlobCache:
    policy = kwargs.pop("policy", FetchPolicy(allow_networks=LOOPBACK))
    return BlobCache(
        tmp_path / "cache",
        max_bytes=kwargs.pop("max_bytes", 100 * 1024 * 1024),
        server=f"https://localhost:{served.port}",
        policy=policy,
        store_context=tls.client_context(),
        renter_context=tls.client_context(),
        retry_seconds=0.01,
        **kwargs,
    )


def renter_ref(served, path: str = "/b/data", data: bytes = DATA, **kwargs) -> InputSpec:
    host = kwargs.pop("host", "localhost")
    return InputSpec(
        path=kwargs.pop("name", "x"),
        sha256=kwargs.pop("sha256", sha256_of(data)),
        source="url",
        url=kwargs.pop("url", f"https://{host}:{served.port}{path}"),
        size=kwargs.pop("size", len(data)),
    )


def store_ref(path: str = "/b/data", data: bytes = DATA, **kwargs) -> InputSpec:
    return InputSpec(
        path="x", sha256=sha256_of(data), source="store", url=path, size=len(data), **kwargs
    )


def read(path: Path) -> bytes:
    return path.read_bytes()


def fetch_error(cache: BlobCache, ref: InputSpec) -> FetchError:
    with pytest.raises(FetchError) as failed:
        cache.fetch(ref, read)
    return failed.value


# --- hits, verification, resume -------------------------------------------------------------


def test_a_cache_hit_does_not_download_again(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served)
    ref = store_ref()

    first = cache.fetch(ref, read)
    second = cache.fetch(ref, read)

    assert first == second == DATA
    assert state.requests == [("/b/data", None)]
    stored = cache.path_of(ref.sha256)
    assert stored == tmp_path / "cache" / ref.sha256[:2] / ref.sha256
    assert stat.S_IMODE(stored.stat().st_mode) == 0o444
    assert not stored.with_name(stored.name + ".part").exists()


def test_a_changed_byte_is_a_mismatch_and_nothing_is_kept(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served)
    state.blobs["/b/data"] = DATA[:-1] + b"\x00"

    error = fetch_error(cache, renter_ref(served))

    assert error.fault == "renter"
    assert "sha256" in str(error)
    assert sha256_of(DATA) in str(error)
    assert cache.used_bytes() == 0


def test_a_mismatch_from_the_store_is_the_hosts_fault(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served)
    state.blobs["/b/data"] = b"something else"

    error = fetch_error(cache, store_ref())

    assert error.fault == "host"


def test_a_cut_download_resumes_from_the_part_with_a_range(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served)
    state.cut_after["/b/data"] = [300_000, 200_000]

    assert cache.fetch(renter_ref(served), read) == DATA

    assert state.requests == [
        ("/b/data", None),
        ("/b/data", "bytes=300000-"),
        ("/b/data", "bytes=500000-"),
    ]


def test_a_part_left_by_an_earlier_agent_is_resumed(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served)
    ref = store_ref()
    part = cache.path_of(ref.sha256).with_name(ref.sha256 + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA[:1000])

    assert cache.fetch(ref, read) == DATA
    assert state.requests == [("/b/data", "bytes=1000-")]


def test_a_server_without_ranges_starts_over_and_still_verifies(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served)
    state.ignore_range = True
    state.cut_after["/b/data"] = [100_000]

    assert cache.fetch(renter_ref(served), read) == DATA
    assert len(state.requests) == 2


def test_cuts_on_every_try_are_a_host_fault(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served, tries=2)
    state.cut_after["/b/data"] = [10, 10, 10]

    error = fetch_error(cache, renter_ref(served))

    assert error.fault == "host"
    assert "connection broke" in str(error)


def test_one_download_per_digest_while_attempts_prepare_side_by_side(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served)
    results: list[bytes] = []

    threads = [
        threading.Thread(target=lambda: results.append(cache.fetch(store_ref(), read)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert results == [DATA] * 4
    assert len(state.requests) == 1


def test_a_cancel_ends_a_fetch(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served)

    with pytest.raises(FetchCancelled):
        cache.fetch(store_ref(), read, is_cancelled=lambda: True)

    assert not cache.path_of(sha256_of(DATA)).exists()


def test_a_cancel_ends_a_fetch_that_waits_for_a_stalled_server(tmp_path, tls, served, state):
    state.stall_after = 1000  # then the server sends nothing more (the timeout is 60 s)
    cache = cache_for(tmp_path, tls, served)
    cancelled = threading.Event()
    threading.Timer(0.3, cancelled.set).start()
    started = time.monotonic()

    try:
        with pytest.raises(FetchCancelled):
            cache.fetch(store_ref(), read, is_cancelled=cancelled.is_set)
    finally:
        state.stall_release.set()

    assert time.monotonic() - started < 5
    assert not cache.path_of(sha256_of(DATA)).exists()


# --- eviction ---------------------------------------------------------------------------------


def test_lru_eviction_keeps_files_in_use_and_the_newest(tmp_path, tls, served, state):
    blobs = {f"/b/{n}": bytes([n]) * 1000 for n in range(4)}
    state.blobs.update(blobs)
    cache = cache_for(tmp_path, tls, served, max_bytes=2500)
    linked = tmp_path / "attempt-inputs-0"
    refs = {n: store_ref(f"/b/{n}", blobs[f"/b/{n}"]) for n in range(4)}
    # blob 0 is linked into an attempt (in use); then 1, 2 and 3 arrive, oldest first
    cache.fetch(refs[0], lambda path: os.link(path, linked))
    for n in (1, 2, 3):
        time.sleep(0.02)
        cache.fetch(refs[n], read)

    present = {n for n, ref in refs.items() if cache.path_of(ref.sha256).exists()}

    # 4000 bytes > 2500: 1 and 2 (the oldest not in use) went; 0 is in use, 3 is the newest
    assert present == {0, 3}
    assert linked.read_bytes() == blobs["/b/0"]
    linked.unlink()  # the attempt ended: 0 is the oldest and no longer in use
    cache.max_bytes = 1500
    cache.evict()
    assert {n for n, ref in refs.items() if cache.path_of(ref.sha256).exists()} == {3}


# --- the renter-URL policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://example.org/x", "only https://"),
        ("https://127.0.0.1/x", "127.0.0.1"),
        ("https://10.1.2.3/x", "10.1.2.3"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("https://[::1]/x", "::1"),
        ("https://[::ffff:127.0.0.1]/x", "127.0.0.1"),
        ("https://224.0.0.1/x", "224.0.0.1"),
        ("https://user:pw@example.org/x", "no user or password"),
    ],
)
def test_renter_urls_the_policy_refuses(tmp_path, tls, served, state, url, words):
    cache = cache_for(tmp_path, tls, served, policy=FetchPolicy())

    error = fetch_error(cache, renter_ref(served, url=url))

    assert error.fault == "renter"
    assert words in str(error)
    assert state.requests == []


def test_a_name_resolving_to_loopback_is_refused(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served, policy=FetchPolicy())

    error = fetch_error(cache, renter_ref(served, host="localhost"))

    assert error.fault == "renter"
    assert "localhost resolves to" in str(error)
    assert state.requests == []


def test_a_name_with_one_private_address_among_public_ones_is_refused(tmp_path, tls, served):
    def resolver(host, port, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.1", port)),
        ]

    cache = cache_for(tmp_path, tls, served, policy=FetchPolicy(), resolver=resolver)

    error = fetch_error(cache, renter_ref(served, host="blobs.example"))

    assert "192.168.1.1" in str(error)


def test_the_connection_is_pinned_to_the_checked_address_with_the_name_for_tls(
    tmp_path, tls, served, state
):
    # "blobs.example" resolves nowhere real: only the checked address (loopback, allowed
    # here) can be reached, and the certificate is verified against the name.
    seen: list[str] = []

    def resolver(host, port, **kwargs):
        seen.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    cache = cache_for(tmp_path, tls, served, resolver=resolver)

    assert cache.fetch(renter_ref(served, host="blobs.example"), read) == DATA
    assert seen == ["blobs.example"]


def test_a_redirect_is_not_followed(tmp_path, tls, served, state):
    state.redirects["/b/moved"] = f"https://localhost:{served.port}/b/data"
    cache = cache_for(tmp_path, tls, served)

    error = fetch_error(cache, renter_ref(served, path="/b/moved"))

    assert error.fault == "renter"
    assert "redirects are not followed" in str(error)
    assert state.requests == [("/b/moved", None)]


@pytest.mark.parametrize(
    "address",
    [
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 (refused, never bound)
        "::",
        "fe80::1",
        "fc00::1",
        "192.0.0.1",
        "255.255.255.255",
        "64:ff9b::a00:1",
        "2002:7f00:1::1",
        "::ffff:169.254.169.254",
    ],
)
def test_addresses_that_carry_or_are_non_public_ones_are_refused(address):
    assert address_refusal(address, FetchPolicy()) is not None


def test_allow_networks_lets_a_private_address_through():
    policy = FetchPolicy(allow_networks=networks_parse(["10.0.0.0/8"]))

    assert address_refusal("10.1.2.3", policy) is None
    assert address_refusal("192.168.0.1", policy) is not None
    assert address_refusal("93.184.215.14", FetchPolicy()) is None


def test_allow_hosts_limits_renter_urls_to_those_names(tmp_path, tls, served, state):
    policy = FetchPolicy(allow_networks=LOOPBACK, allow_hosts=("*.example", "data.org"))
    cache = cache_for(tmp_path, tls, served, policy=policy)

    error = fetch_error(cache, renter_ref(served, host="localhost"))

    assert "does not fetch from localhost" in str(error)
    assert state.requests == []


def test_an_untrusted_certificate_is_the_renters_fault(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served)
    cache.renter_context = __import__("ssl").create_default_context()  # the system CAs only

    error = fetch_error(cache, renter_ref(served))

    assert error.fault == "renter"
    assert "certificate" in str(error)


# --- sizes and answers -------------------------------------------------------------------------


def test_a_body_over_the_stated_size_is_refused(tmp_path, tls, served, state):
    cache = cache_for(tmp_path, tls, served)

    error = fetch_error(cache, renter_ref(served, size=1000))

    assert error.fault == "renter"
    assert "larger than 1000 bytes" in str(error)
    assert cache.used_bytes() == 0


def test_an_unstated_size_is_capped_by_fetch_max(tmp_path, tls, served, state):
    policy = FetchPolicy(allow_networks=LOOPBACK, max_bytes=4096)
    cache = cache_for(tmp_path, tls, served, policy=policy)

    error = fetch_error(cache, renter_ref(served, size=None))
    assert "larger than 4096 bytes" in str(error)

    error = fetch_error(cache, renter_ref(served, size=10_000))
    assert "this host fetches at most 4096" in str(error)


@pytest.mark.parametrize(
    ("source", "status", "fault"),
    [
        ("url", 404, "renter"),
        ("url", 403, "renter"),
        ("store", 403, "host"),
        ("store", 503, "host"),
    ],
)
def test_fault_kinds_of_http_answers(tmp_path, tls, served, state, source, status, fault):
    state.status["/b/data"] = status
    cache = cache_for(tmp_path, tls, served, tries=2)
    ref = renter_ref(served) if source == "url" else store_ref()

    error = fetch_error(cache, ref)

    assert (error.fault, str(error)) == (fault, f"HTTP {status}")


def test_a_refused_connection_is_the_hosts_fault(tmp_path, tls, served):
    cache = cache_for(tmp_path, tls, served, tries=1)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()

    error = fetch_error(cache, renter_ref(served, url=f"https://localhost:{port}/x"))

    assert error.fault == "host"


def test_network_settings_parse_cidrs():
    assert networks_parse(["10.0.0.0/8", " fd00::/8 "]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )
    with pytest.raises(ValueError, match="does not appear to be"):
        networks_parse(["not a network"])
