"""Django's Redis cache, keeping one client per connection pool instead of one per call.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` on every cache call, and
building one copies its table of response callbacks: 0.1 ms, most of what a ``get`` costs on
this machine. Every throttled request makes two such calls (DRF's history, read and written
back), so the catalog paid it on every page (docs/benchmarks.md "Catalog"). A ``redis.Redis``
is safe to share between threads (it takes a connection from its pool for each command), and
Django keeps a cache object per thread anyway; nothing else changes.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class _ClientPerPool(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # Django's own helpers, as its get_client uses them (django-stubs omit them).
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _ClientPerPool
