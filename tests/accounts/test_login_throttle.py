"""Log-in is throttled per address *and* per target account (accounts.login).

The throttle history lives in the shared cache (Redis in CI), so every test uses a victim and
addresses of its own.
"""

from __future__ import annotations

import ipaddress
import uuid

import pytest
from django.conf import settings
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from accounts import login
from accounts.models import ApiToken, User
from accounts.services import api_token_create

LOGIN = "/api/v1/auth/login/"
PASSWORD = "correct horse 1"
WINDOW = 900

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = 1_899_999_960.0  # a whole minute: the window moves in minute steps

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Clock:
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_FAILURE_WINDOW_SECONDS = WINDOW
    fake = Clock()
    monkeypatch.setattr(login, "_now", fake)
    return fake


@pytest.fixture
def victim() -> User:
    name = f"victim{uuid.uuid4().hex[:12]}"
    return User.objects.create_user(username=name, email=f"{name}@example.com", password=PASSWORD)


def _address() -> str:
    return str(ipaddress.IPv6Address(uuid.uuid4().int))


def _attempt(username: str, password: str, *, client: APIClient | None = None) -> int:
    client = client or APIClient(REMOTE_ADDR=_address())
    response = client.post(LOGIN, {"username": username, "password": password})
    return response.status_code


def _tokens(user: User) -> int:
    return ApiToken.objects.filter(user=user).count()


@pytest.mark.usefixtures("clock")
def test_a_guesser_on_many_addresses_is_stopped_by_the_account_limit(victim: User) -> None:
    # when: each guess from a new address, then the right password from yet another one
    guesses = [_attempt(victim.username, f"guess {n}") for n in range(5)]
    real_user = APIClient(REMOTE_ADDR=_address())
    response = real_user.post(LOGIN, {"username": victim.username, "password": PASSWORD})

    # then
    assert guesses == [400, 400, 400, 429, 429]
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert response.json()["error"]["message"] == (
        f"Too many failed log-ins for this account. Expected available in {WINDOW} seconds."
    )
    assert response["Retry-After"] == str(WINDOW)
    assert _tokens(victim) == 0
    assert "sessionid" not in real_user.cookies


def test_the_owner_gets_in_once_the_window_has_passed(clock: Clock, victim: User) -> None:
    # given the account throttled by three failures, and more attempts while it is
    assert [_attempt(victim.username, "nope") for _ in range(3)] == [400, 400, 400]
    clock.now += WINDOW / 2
    assert _attempt(victim.username, "nope") == 429
    assert _attempt(victim.username, PASSWORD) == 429

    # when: the window after the last *counted* failure has passed (refusals don't extend it)
    clock.now += WINDOW / 2 + 1
    late = _attempt(victim.username, PASSWORD)

    # then
    assert late == 200
    assert _tokens(victim) == 1


def test_a_browser_that_logged_in_before_is_not_locked_out(clock: Clock, victim: User) -> None:
    # given the owner's browser logged in once (it keeps the device cookie)
    first_visit = APIClient(REMOTE_ADDR=_address())
    assert _attempt(victim.username, PASSWORD, client=first_visit) == 200
    browser = APIClient(REMOTE_ADDR=_address())
    device = first_visit.cookies[settings.LOGIN_DEVICE_COOKIE].value
    browser.cookies[settings.LOGIN_DEVICE_COOKIE] = device
    # and an attacker fails on purpose to lock the account
    assert [_attempt(victim.username, "nope") for _ in range(4)] == [400, 400, 400, 429]

    # when
    owner = _attempt(victim.username, PASSWORD, client=browser)
    stolen_name = APIClient(REMOTE_ADDR=_address())
    stolen_name.cookies[settings.LOGIN_DEVICE_COOKIE] = "forged:value"
    forged = _attempt(victim.username, PASSWORD, client=stolen_name)

    # then the owner's browser gets in; a forged cookie is held like any stranger
    assert (owner, forged) == (200, 429)
    assert _tokens(victim) == 2


def test_a_device_cookie_of_another_account_does_not_help(
    clock: Clock, victim: User, mallory: User
) -> None:
    # given mallory logs in to her own account and keeps the cookie
    attacker = APIClient(REMOTE_ADDR=_address())
    assert _attempt(mallory.username, PASSWORD, client=attacker) == 200

    # when she guesses the victim's password with it
    guesses = [_attempt(victim.username, f"guess {n}", client=attacker) for n in range(5)]

    # then
    assert guesses == [400, 400, 400, 429, 429]
    assert _tokens(victim) == 0


def test_the_right_password_is_not_a_failure(clock: Clock, victim: User) -> None:
    # when the owner logs in many times from many places
    statuses = [_attempt(victim.username, PASSWORD) for _ in range(5)]

    # then
    assert statuses == [200] * 5


def test_the_account_limit_ignores_the_usernames_case(clock: Clock, victim: User) -> None:
    variants = [victim.username.upper(), victim.username.title(), victim.username]

    statuses = [_attempt(name, "nope") for name in variants] + [_attempt(victim.username, "x")]

    assert statuses == [400, 400, 400, 429]


@pytest.fixture
def auth_rate_two_per_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        SimpleRateThrottle,
        "THROTTLE_RATES",
        {"anon": "1000/min", "user": "1000/min", "auth": "2/min"},
    )
    monkeypatch.setattr(SimpleRateThrottle, "timer", lambda self: 1_000_000.0)


def _token_client(address: str, user: User) -> APIClient:
    _, plaintext = api_token_create(user=user, name="attacker")
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return client


@pytest.mark.usefixtures("auth_rate_two_per_minute")
def test_a_valid_token_does_not_dodge_the_address_rate(victim: User) -> None:
    # given one address, and a fresh account (and token) of the attacker's for every guess:
    # DRF's scoped throttle keyed a signed-in request by its user, a new budget per token
    address = _address()
    attackers = [
        User.objects.create_user(username=name, email=f"{name}@example.com", password=PASSWORD)
        for name in (f"m{uuid.uuid4().hex[:12]}" for _ in range(3))
    ]
    clients = [_token_client(address, user) for user in attackers]

    # when
    statuses = [
        client.post(LOGIN, {"username": victim.username, "password": "guess"}).status_code
        for client in clients
    ]

    # then the third guess from that address is throttled like an anonymous one
    assert statuses == [400, 400, 429]
    assert _tokens(victim) == 0


def test_a_log_in_goes_on_when_its_counter_vanished_from_the_cache(
    clock: Clock, victim: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the cache loses the attempt's counter between the reservation and the check (it
    # expired, or the cache was flushed or restarted)
    from django.core.cache import cache

    reserve = login._reserve

    def reserve_then_lose(username: str, now: float) -> tuple[str, int]:
        key, count = reserve(username, now)
        cache.delete(key)
        return key, count

    monkeypatch.setattr(login, "_reserve", reserve_then_lose)

    # then: the right password still logs in (it was a 500)
    assert _attempt(victim.username, PASSWORD) == 200
