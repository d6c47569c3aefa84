"""Fixtures for the payment tests: Stripe stand-ins reached over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from pytest_django.fixtures import Settings

from accounts.models import ApiToken, User
from accounts.tokens import secret_issue
from tests.ledger.stripe_fakes import FakeConnect, FakeConnectState, Localstripe

WEBHOOK_SECRET = "whsec_test_communipute"
CONNECT_WEBHOOK_SECRET = "whsec_test_connect"


@pytest.fixture(scope="session")
def localstripe_server() -> Iterator[Localstripe]:
    server = Localstripe()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_connect_server() -> Iterator[FakeConnect]:
    server = FakeConnect()
    yield server
    server.stop()


@pytest.fixture
def fake_connect(fake_connect_server: FakeConnect) -> FakeConnect:
    """The fake Connect server with a fresh record of requests."""
    fake_connect_server.server.state = FakeConnectState()
    return fake_connect_server


def _stripe_settings(settings: Settings, api_base: str) -> None:
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_communipute"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_communipute"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_CONNECT_WEBHOOK_SECRET = CONNECT_WEBHOOK_SECRET
    settings.STRIPE_API_BASE = api_base
    # Retries are tested explicitly (Celery's, with the same key); the library's own
    # retries would sleep and hide them.
    settings.STRIPE_MAX_NETWORK_RETRIES = 0


@pytest.fixture
def stripe_payments(settings: Settings, localstripe_server: Localstripe) -> Localstripe:
    """PAYMENT_PROVIDER=stripe, pointed at localstripe."""
    _stripe_settings(settings, localstripe_server.url)
    return localstripe_server


@pytest.fixture
def stripe_connect(settings: Settings, fake_connect: FakeConnect) -> FakeConnect:
    """PAYMENT_PROVIDER=stripe, pointed at the fake Connect server."""
    _stripe_settings(settings, fake_connect.url)
    return fake_connect


@pytest.fixture
def http_as(live_server: Any) -> Iterator[Callable[[User], requests.Session]]:
    """A real HTTP client of the live server, authenticated with a fresh API token of a user."""
    sessions: list[requests.Session] = []

    def make(user: User) -> requests.Session:
        issued = secret_issue("cpt")
        ApiToken.objects.create(user=user, name="test", prefix=issued.prefix, digest=issued.digest)
        session = LiveSession(live_server.url)
        session.headers["Authorization"] = f"Token {issued.plaintext}"
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


class LiveSession(requests.Session):
    """``requests`` with the live server's address in front of every path."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 15)
        return super().request(method, f"{self.base_url}{url!s}", *args, **kwargs)


def wait_for(condition: Callable[[], bool], *, timeout: float = 15.0) -> None:
    """Poll ``condition`` (a database read) until it holds: webhooks arrive on their own time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)
