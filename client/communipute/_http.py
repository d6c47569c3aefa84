"""The one place that speaks HTTP: the token, retries, the error envelope, pagination.

What is retried (``RETRIES`` times, with a short growing pause):
- a request that never got an answer (connection refused or cut, a timeout), and a 502, 503
  or 504 — only for requests that are safe to repeat: GET, HEAD, OPTIONS, and a POST carrying
  an ``Idempotency-Key`` (the server answers a repeat with the first answer, docs/api.md);
- a 429 whose ``Retry-After`` is at most ``RETRY_AFTER_MAX`` seconds, after that long: the
  server did nothing with it, so any request may be sent again (a longer wait, such as a
  log-in throttled for its account, is raised at once with ``retry_after`` set).
Everything else that is 4xx or 5xx is raised at once as the typed ``ApiError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from communipute._version import __version__
from communipute.errors import ApiError, ConnectionFailed, api_error

RETRIES = 4
RETRY_PAUSE = 0.5
RETRY_PAUSE_MAX = 8.0
RETRY_AFTER_MAX = 30.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RETRY_STATUSES = frozenset({502, 503, 504})


def _no_cookies() -> CookieJar:
    # Token auth only: a session cookie (log-in sets one) would make a request a browser's.
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class Api:
    """An ``httpx.Client`` on the server's base URL with ``Authorization: Token``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {
            "User-Agent": f"communipute/{__version__} httpx/{httpx.__version__}",
            "Accept": "application/json",
        }
        if token:
            headers["Authorization"] = f"Token {token}"
        self.url = url.rstrip("/")
        self.sleep: Callable[[float], None] = time.sleep
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            cookies=_no_cookies(),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        retry: bool | None = None,
    ) -> httpx.Response:
        """Send, retrying as the module says; the response (2xx or 3xx), else ``ApiError``.
        ``retry``: force retries on (the caller knows the request is safe) or off."""
        headers = dict(headers or {})
        if retry is None:
            retry = method in _SAFE_METHODS or "Idempotency-Key" in headers
        pause = RETRY_PAUSE
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                response = self._http.request(
                    method, path, json=json, content=content, headers=headers, params=params
                )
            except httpx.TransportError as exc:
                if not retry or last:
                    raise ConnectionFailed(
                        f"{method} {self.url}{path}: {type(exc).__name__}: {exc}"
                    ) from exc
                self.sleep(pause)
                pause = min(pause * 2, RETRY_PAUSE_MAX)
                continue
            wait = _retry_after(response) if response.status_code == 429 else None
            if response.status_code == 429 and not last and (wait or 0) <= RETRY_AFTER_MAX:
                self.sleep(wait or pause)
                pause = min(pause * 2, RETRY_PAUSE_MAX)
                continue
            if response.status_code in _RETRY_STATUSES and retry and not last:
                self.sleep(pause)
                pause = min(pause * 2, RETRY_PAUSE_MAX)
                continue
            if response.status_code >= 400:
                raise error_of(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.json("GET", path, params=params)

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paged list (``{count, next, previous, results}``), in order."""
        page: Any = self.get(path, params)
        while True:
            yield from page["results"]
            following = page.get("next")
            if not following:
                return
            page = self.get(str(following))

    @contextmanager
    def stream(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """A GET whose body is read as it arrives (downloads); a refusal is ``ApiError``."""
        try:
            with self._http.stream("GET", path, headers=dict(headers or {})) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response)
                yield response
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"GET {self.url}{path}: {type(exc).__name__}: {exc}") from exc

    def raw(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        content: Any = None,
    ) -> httpx.Response:
        """One try, no retry and no error mapping (the tus client decides itself)."""
        return self._http.request(method, path, headers=dict(headers), content=content)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def error_of(response: httpx.Response) -> ApiError:
    """The ``ApiError`` (or subclass) for a refused response."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return api_error(
        response.status_code,
        body,
        reason=response.reason_phrase or (response.text[:200] if response.text else ""),
        retry_after=_retry_after(response),
    )
