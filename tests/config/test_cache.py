"""The Redis cache (config.cache) keeps one client per connection pool and works as Django's."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache, caches

from config.cache import RedisCache

pytestmark = pytest.mark.redis


@pytest.fixture
def key() -> str:
    return f"test-cache-{uuid.uuid4().hex}"


def test_every_call_shares_one_client_and_one_pool(key: str) -> None:
    # given: the project's cache on Redis
    backend = caches["default"]
    assert isinstance(backend, RedisCache)
    client = backend._cache  # type: ignore[attr-defined]

    # when
    cache.set(key, [1.5, 2.5], 30)
    first = client.get_client(key)

    # then: the same client for reads and writes, on the one pool
    assert client.get_client(key, write=True) is first
    assert first.connection_pool is client._get_connection_pool(write=False)


def test_it_reads_writes_counts_and_expires_as_djangos(key: str) -> None:
    # when / then
    assert cache.get(key) is None
    assert cache.add(key, {"history": [1.0, 2.0]}, 30) is True
    assert cache.add(key, "other", 30) is False
    assert cache.get(key) == {"history": [1.0, 2.0]}
    cache.set(f"{key}-n", 1, 30)
    assert cache.incr(f"{key}-n") == 2
    cache.set(key, "gone", 0)  # a non-positive timeout deletes
    assert cache.get(key) is None
    cache.delete_many([key, f"{key}-n"])
    assert cache.get(f"{key}-n") is None
