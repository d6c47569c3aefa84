"""Password log-in with a throttle per target account (docs/api.md, "Throttling").

Each address has the ``auth`` rate (``AuthAddressThrottle``, every request, signed in or not).
On top, each *account* takes at most ``LOGIN_FAILURE_LIMIT`` failed log-ins per sliding
``LOGIN_FAILURE_WINDOW_SECONDS``, from all addresses together: a guesser spread over many
addresses is slowed to that rate. Past it, attempts for the account are 429 before the
password is checked, so a throttled guess learns nothing.

So that an attacker cannot lock the owner out by failing on purpose, a browser that logged in
to the account before carries a signed device cookie (``LOGIN_DEVICE_COOKIE``, valid
``LOGIN_DEVICE_COOKIE_DAYS``) and is not held by the account's count (only by its address's
rate). Everyone else gets in once the failures age out of the window: a throttle lasts only
as long as someone keeps failing, never longer than the window after the last failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time

from django.conf import settings
from django.contrib.auth import authenticate
from django.core import signing
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import User
from config.errors import ValidationFailed

_BUCKETS = 15
_DEVICE_SALT = "accounts.login.device"


def _now() -> float:
    return time.time()


class AuthAddressThrottle(SimpleRateThrottle):
    """The ``auth`` rate per client address, whether or not the request carries a token.

    DRF's ``ScopedRateThrottle`` keys an authenticated request by its *user*, so anyone with a
    valid token got a fresh budget per token and never hit the address limit.
    """

    scope = "auth"

    def get_cache_key(self, request: Request, view: object) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def _account_key(username: str) -> str:
    digest = hashlib.sha256(username.casefold().encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


def _bucket_seconds() -> int:
    return max(1, math.ceil(settings.LOGIN_FAILURE_WINDOW_SECONDS / _BUCKETS))


def _bucket_keys(username: str, now: float) -> list[tuple[str, int]]:
    """The keys of the buckets that make up the window ending now, oldest first."""
    size = _bucket_seconds()
    current = int(now // size)
    base = _account_key(username)
    return [
        (f"{base}:{index}", index * size) for index in range(current - _BUCKETS + 1, current + 1)
    ]


def _reserve(username: str, now: float) -> tuple[str, int]:
    """Count this attempt as a failure until it proves otherwise: atomic against a burst."""
    key, _ = _bucket_keys(username, now)[-1]
    cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS + _bucket_seconds())
    return key, cache.incr(key)


def _failures_and_wait(username: str, now: float) -> tuple[int, int]:
    buckets = _bucket_keys(username, now)
    counts = cache.get_many([key for key, _ in buckets])
    total = sum(int(counts.get(key, 0)) for key, _ in buckets)
    oldest = next((start for key, start in buckets if int(counts.get(key, 0)) > 0), None)
    # The oldest bucket with a failure leaves the window this long from now.
    wait = 1 if oldest is None else max(1, math.ceil(oldest + _BUCKETS * _bucket_seconds() - now))
    return total, wait


def device_cookie_value(user: User) -> str:
    return signing.dumps(user.username.casefold(), salt=_DEVICE_SALT)


def _is_known_device(username: str, cookie: str | None) -> bool:
    if not cookie:
        return False
    max_age = settings.LOGIN_DEVICE_COOKIE_DAYS * 86400
    try:
        remembered = signing.loads(cookie, salt=_DEVICE_SALT, max_age=max_age)
    except signing.BadSignature:
        return False
    return isinstance(remembered, str) and remembered == username.casefold()


def _release(key: str) -> None:
    """Take back a reserved attempt. The counter may be gone (expired, or the cache flushed or
    restarted meanwhile): then there is nothing to take back, and the log-in goes on."""
    with contextlib.suppress(ValueError):
        cache.decr(key)


def user_login(
    *, request: HttpRequest, username: str, password: str, device_cookie: str | None
) -> User:
    """Check a password under the account's failure throttle; the user, or a refusal.

    Raises ``Throttled`` (429, ``Retry-After``) when the account has had
    ``LOGIN_FAILURE_LIMIT`` failures in the window and this browser is not a known device of
    it, and ``ValidationFailed`` (``invalid_credentials``) for a wrong password, which counts.
    Uses the cache only (atomic ``incr``); no database writes.
    """
    known = _is_known_device(username, device_cookie)
    now = _now()
    key = None
    if not known:
        key, _ = _reserve(username, now)
        failures, wait = _failures_and_wait(username, now)
        if failures > settings.LOGIN_FAILURE_LIMIT:
            _release(key)  # a refused attempt checked no password: not a failure
            raise Throttled(wait=wait, detail="Too many failed log-ins for this account.")
    user = authenticate(request, username=username, password=password)
    if isinstance(user, User):
        if key is not None:
            _release(key)
        return user
    raise ValidationFailed(
        "Unable to log in with the given username and password.", code="invalid_credentials"
    )
