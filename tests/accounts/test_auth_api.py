from __future__ import annotations

import ipaddress
import threading
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import ApiToken, User
from accounts.tokens import secret_digest

SIGNUP = "/api/v1/auth/signup/"
LOGIN = "/api/v1/auth/login/"
LOGOUT = "/api/v1/auth/logout/"
ME = "/api/v1/auth/me/"
CSRF = "/api/v1/auth/csrf/"


def _error(code: str, message: str, fields: dict[str, object] | None = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


@pytest.mark.django_db
def test_signup_creates_the_user_a_token_and_a_session(api):
    # given
    before = timezone.now()

    # when
    response = api.post(
        SIGNUP,
        {"username": "bob", "email": "bob@example.com", "password": "a fine passphrase"},
        format="json",
    )

    # then
    assert response.status_code == 201
    user = User.objects.get(username="bob")
    body = response.json()
    assert body["user"] == {
        "id": user.pk,
        "username": "bob",
        "email": "bob@example.com",
        "is_staff": False,
        "date_joined": body["user"]["date_joined"],
    }
    assert user.check_password("a fine passphrase")
    token = ApiToken.objects.get(user=user)
    assert token.digest == secret_digest(body["token"])
    assert token.name == "login"
    assert token.expires_at is not None
    ttl = timedelta(seconds=settings.LOGIN_TOKEN_TTL_SECONDS)
    assert before + ttl <= token.expires_at <= timezone.now() + ttl
    # the browser is logged in by the session cookie alone
    assert api.get(ME).json()["username"] == "bob"


@pytest.mark.django_db
def test_signup_applies_the_password_validators(api):
    # when
    response = api.post(
        SIGNUP, {"username": "bob", "email": "bob@example.com", "password": "password"}
    )

    # then
    assert response.status_code == 400
    assert response.json() == _error(
        "invalid", "This password is too common.", {"password": ["This password is too common."]}
    )
    assert User.objects.count() == 0
    assert ApiToken.objects.count() == 0


@pytest.mark.django_db
def test_signup_refuses_a_taken_username_and_email_case_insensitively(api, alice):
    # when
    response = api.post(
        SIGNUP,
        {"username": "Alice", "email": "ALICE@example.com", "password": "a fine passphrase"},
    )

    # then
    assert response.status_code == 400
    assert response.json() == _error(
        "duplicate",
        "A user with that username already exists.",
        {
            "username": ["A user with that username already exists."],
            "email": ["A user with that email address already exists."],
        },
    )
    assert list(User.objects.values_list("username", flat=True)) == ["alice"]
    assert ApiToken.objects.count() == 0


@pytest.mark.django_db
def test_signup_reports_every_problem_at_once(api, alice):
    # when
    response = api.post(
        SIGNUP, {"username": "alice", "email": "new@example.com", "password": "12345678"}
    )

    # then
    assert response.status_code == 400
    assert response.json() == _error(
        "invalid",
        "A user with that username already exists.",
        {
            "username": ["A user with that username already exists."],
            "password": ["This password is too common.", "This password is entirely numeric."],
        },
    )
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_signup_refuses_a_malformed_email_and_username(api):
    # when
    response = api.post(
        SIGNUP, {"username": "bob smith", "email": "nope", "password": "a fine passphrase"}
    )

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert sorted(response.json()["error"]["fields"]) == ["email", "username"]
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_login_returns_a_token_that_authenticates_and_a_session(api, alice):
    # when
    response = api.post(LOGIN, {"username": "alice", "password": "correct horse 1"})

    # then
    assert response.status_code == 200
    token = response.json()["token"]
    assert ApiToken.objects.get(user=alice).digest == secret_digest(token)
    assert api.get(ME).json()["username"] == "alice"
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert by_token.get(ME).json()["username"] == "alice"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("username", "password"), [("alice", "wrong"), ("nobody", "correct horse 1")]
)
def test_login_with_bad_credentials_is_refused(api, alice, username, password):
    # when
    response = api.post(LOGIN, {"username": username, "password": password})

    # then
    assert response.status_code == 400
    assert response.json() == _error(
        "invalid_credentials", "Unable to log in with the given username and password."
    )
    assert ApiToken.objects.count() == 0
    assert api.get(ME).status_code == 401


@pytest.mark.django_db
def test_login_of_an_inactive_user_is_refused(api, alice):
    # given
    User.objects.filter(pk=alice.pk).update(is_active=False)

    # when
    response = api.post(LOGIN, {"username": "alice", "password": "correct horse 1"})

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert ApiToken.objects.count() == 0


@pytest.mark.django_db
def test_logout_revokes_only_the_token_used(api, alice):
    # given
    first = api.post(LOGIN, {"username": "alice", "password": "correct horse 1"}).json()["token"]
    second = APIClient().post(LOGIN, {"username": "alice", "password": "correct horse 1"})
    other = second.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")

    # when
    response = client.post(LOGOUT)

    # then
    assert response.status_code == 204
    assert client.get(ME).json() == _error("authentication_failed", "Invalid or revoked token.")
    revoked = ApiToken.objects.get(digest=secret_digest(first))
    assert revoked.revoked_at is not None
    assert ApiToken.objects.get(digest=secret_digest(other)).revoked_at is None


@pytest.mark.django_db
def test_logout_ends_the_session(api, alice):
    # given
    api.post(LOGIN, {"username": "alice", "password": "correct horse 1"})
    assert api.get(ME).status_code == 200

    # when
    response = api.post(LOGOUT)

    # then
    assert response.status_code == 204
    assert api.get(ME).status_code == 401
    # a session logout leaves the API token alone
    assert ApiToken.objects.get(user=alice).revoked_at is None


@pytest.mark.django_db
def test_logout_when_not_logged_in_is_a_no_op(api):
    assert api.post(LOGOUT).status_code == 204


@pytest.mark.django_db
def test_me_shows_staff(client_for, staff):
    # when
    body = client_for(staff).get(ME).json()

    # then
    assert body == {
        "id": staff.pk,
        "username": "sam",
        "email": "sam@example.com",
        "is_staff": True,
        "date_joined": body["date_joined"],
    }


@pytest.mark.django_db
def test_the_browser_flow_needs_the_csrf_token(alice):
    # given: a browser (it sends Origin) that has not fetched the CSRF cookie yet
    browser = APIClient(enforce_csrf_checks=True, HTTP_ORIGIN="http://testserver")
    credentials = {"username": "alice", "password": "correct horse 1"}

    # when
    refused = browser.post(LOGIN, credentials, format="json")

    # then
    assert refused.status_code == 403
    assert refused.json() == _error("permission_denied", "CSRF Failed: CSRF cookie not set.", None)
    assert ApiToken.objects.count() == 0

    # when: it fetches the cookie first, as the web app does
    csrf = browser.get(CSRF)
    token = csrf.json()["csrf_token"]
    assert browser.cookies["csrftoken"].value
    logged_in = browser.post(LOGIN, credentials, format="json", HTTP_X_CSRFTOKEN=token)

    # then
    assert logged_in.status_code == 200
    assert browser.get(ME).json()["username"] == "alice"
    # session writes need the (rotated) token; log-in rotated it
    assert browser.post(LOGOUT, HTTP_X_CSRFTOKEN=token).status_code == 403
    fresh = browser.cookies["csrftoken"].value
    assert browser.post(LOGOUT, HTTP_X_CSRFTOKEN=fresh).status_code == 204
    assert browser.get(ME).status_code == 401


@pytest.mark.django_db
def test_a_script_logs_in_without_csrf(alice):
    # given: no Origin header, as with curl or requests
    script = APIClient(enforce_csrf_checks=True)

    # when
    response = script.post(LOGIN, {"username": "alice", "password": "correct horse 1"})

    # then
    assert response.status_code == 200


@pytest.fixture
def auth_rate_two_per_minute(monkeypatch):
    """DRF reads the rates into a class attribute at import, so override them there."""
    monkeypatch.setattr(
        SimpleRateThrottle,
        "THROTTLE_RATES",
        {"anon": "1000/min", "user": "1000/min", "auth": "2/min"},
    )
    monkeypatch.setattr(SimpleRateThrottle, "timer", lambda self: 1_000_000.0)


def _fresh_address() -> str:
    # Throttle history lives in the shared cache (Redis in CI): a new address per test.
    return str(ipaddress.IPv6Address(uuid.uuid4().int))


@pytest.mark.django_db
@pytest.mark.usefixtures("auth_rate_two_per_minute")
def test_auth_endpoints_are_throttled_with_the_auth_rate(alice):
    # given
    client = APIClient(REMOTE_ADDR=_fresh_address())
    wrong = {"username": "alice", "password": "wrong"}
    assert client.post(LOGIN, wrong).status_code == 400
    assert client.post(SIGNUP, {}).status_code == 400

    # when
    response = client.post(LOGIN, {"username": "alice", "password": "correct horse 1"})

    # then
    assert response.status_code == 429
    assert response.json() == _error(
        "throttled", "Request was throttled. Expected available in 60 seconds."
    )
    assert response["Retry-After"] == "60"
    assert ApiToken.objects.count() == 0
    # other endpoints from the same address keep the ordinary rate
    assert client.get(CSRF).status_code == 200
    assert client.get(CSRF).status_code == 200
    # and another address has its own budget
    other = APIClient(REMOTE_ADDR=_fresh_address())
    assert (
        other.post(LOGIN, {"username": "alice", "password": "correct horse 1"}).status_code == 200
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("auth_rate_two_per_minute")
def test_a_forged_x_forwarded_for_does_not_dodge_the_auth_rate(alice):
    # given: no proxy configured (NUM_PROXIES=0), one client rotating X-Forwarded-For
    address = _fresh_address()
    wrong = {"username": "alice", "password": "wrong"}

    def attempt(n: int) -> int:
        client = APIClient(REMOTE_ADDR=address, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
        return client.post(LOGIN, wrong).status_code

    # when
    statuses = [attempt(n) for n in range(3)]

    # then
    assert statuses == [400, 400, 429]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_signups_for_one_username_create_one_user():
    # given
    threads_count = 5
    start = threading.Barrier(threads_count)
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def signup(n: int) -> None:
        try:
            start.wait(timeout=10)
            response = APIClient().post(
                SIGNUP,
                {
                    "username": "bob",
                    "email": f"bob{n}@example.com",
                    "password": "a fine passphrase",
                },
            )
            code = response.json().get("error", {}).get("code")
            with lock:
                results.append((response.status_code, code))
        finally:
            connection.close()

    threads = [threading.Thread(target=signup, args=(n,)) for n in range(threads_count)]

    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    # then
    assert sorted(results, key=lambda r: r[0]) == [(201, None)] + [(400, "duplicate")] * 4
    assert User.objects.filter(username="bob").count() == 1
