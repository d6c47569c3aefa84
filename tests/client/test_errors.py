"""Every refusal is ``communipute.ApiError`` with the server's envelope; 402 is
``InsufficientCredits``; what is safe to repeat is retried, and nothing else is."""

from __future__ import annotations

import httpx
import pytest

from communipute import (
    ApiError,
    AuthenticationFailed,
    Client,
    ConnectionFailed,
    InsufficientCredits,
    NotFound,
)
from tests.client.fakes import URL, FakeServer, envelope, job_json


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def test_an_error_envelope_becomes_an_api_error_with_its_fields(server: FakeServer) -> None:
    # given: the server refuses a submit naming two fields
    server.route(
        "POST",
        "/api/v1/jobs/",
        envelope(
            400,
            "invalid",
            "Invalid input.",
            max_cost_micros=["This field is required."],
            placement=['give a host, or placement: "auto"'],
        ),
    )

    # when
    with pytest.raises(ApiError) as raised:
        server.client().submit({"code": "print(1)"})

    # then: status, code, message and fields as sent, and all of them in the text
    error = raised.value
    assert (error.status, error.code, error.message) == (400, "invalid", "Invalid input.")
    assert error.fields == {
        "max_cost_micros": ["This field is required."],
        "placement": ['give a host, or placement: "auto"'],
    }
    assert "max_cost_micros: This field is required." in str(error)


def test_402_is_insufficient_credits_and_still_an_api_error(server: FakeServer) -> None:
    server.route(
        "POST", "/api/v1/jobs/", envelope(402, "insufficient_credits", "Not enough credits.")
    )

    with pytest.raises(InsufficientCredits) as raised:
        server.client().submit({"code": "print(1)"})

    assert isinstance(raised.value, ApiError)
    assert (raised.value.status, raised.value.code) == (402, "insufficient_credits")


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [(401, "authentication_failed", AuthenticationFailed), (404, "not_found", NotFound)],
)
def test_401_and_404_have_their_own_types(server, status, code, kind) -> None:
    server.route("GET", "/api/v1/jobs/9/", envelope(status, code, "no"))

    with pytest.raises(kind) as raised:
        server.client().job(9)

    assert (raised.value.status, raised.value.code) == (status, code)


def test_a_body_that_is_not_the_envelope_still_gives_a_typed_error(server: FakeServer) -> None:
    # given: a proxy in front answers with HTML
    server.route("GET", "/api/v1/wallet/", httpx.Response(418, text="<html>teapot</html>"))

    with pytest.raises(ApiError) as raised:
        server.client().wallet()

    assert (raised.value.status, raised.value.code, raised.value.fields) == (418, "http_418", {})


def test_a_read_is_retried_after_a_dropped_connection_and_a_503(server: FakeServer) -> None:
    # given: the wallet read fails twice before it answers
    wallet = {"balance_micros": 5, "held_micros": 2, "available_micros": 3}
    server.route(
        "GET",
        "/api/v1/wallet/",
        [httpx.ConnectError("refused"), envelope(503, "unavailable", "later"), wallet],
    )

    # then
    assert server.client().wallet().available_micros == 3
    assert server.calls("GET", "/api/v1/wallet/") == ["GET /api/v1/wallet/"] * 3


def test_a_submit_is_retried_with_the_same_key_and_the_same_bytes(server: FakeServer) -> None:
    # given: the first submit's answer is lost on the way back
    server.route(
        "POST", "/api/v1/jobs/", [httpx.ReadError("cut"), httpx.Response(201, json=job_json())]
    )

    # when
    job = server.client().submit({"code": "print(1)", "placement": "auto"})

    # then: the same Idempotency-Key and the very same body twice, one job
    assert job.id == 7
    posts = [
        (h, body) for (m, p, h), body in zip(server.log, server.bodies, strict=True) if m == "POST"
    ]
    assert len(posts) == 2
    (first, first_body), (second, second_body) = posts
    assert first["idempotency-key"] == second["idempotency-key"]
    assert len(first["idempotency-key"]) == 36
    assert first_body == second_body


def test_a_post_without_a_key_is_not_repeated_after_a_lost_answer(server: FakeServer) -> None:
    # given: cancel is not idempotent by key: its answer is lost
    server.route("POST", "/api/v1/jobs/7/cancel/", httpx.ReadError("cut"))
    server.route("GET", "/api/v1/jobs/7/", job_json())
    job = server.client().job(7)

    # when / then: one try, then ConnectionFailed
    with pytest.raises(ConnectionFailed):
        job.cancel()
    assert server.calls("POST") == ["POST /api/v1/jobs/7/cancel/"]


def test_a_throttled_request_waits_as_told_and_goes_again(server: FakeServer) -> None:
    throttled = httpx.Response(
        429,
        headers={"Retry-After": "7"},
        json={"error": {"code": "throttled", "message": "slow down", "fields": {}}},
    )
    server.route("GET", "/api/v1/jobs/7/", [throttled, job_json()])
    client = server.client()
    pauses: list[float] = []
    client._api.sleep = pauses.append

    assert client.job(7).status == "queued"
    assert pauses == [7.0]


def test_the_token_goes_in_the_authorization_header_and_no_cookie_is_kept() -> None:
    # given: a server that sets a session cookie on every answer
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"Set-Cookie": "sessionid=abc; Path=/"}, json=job_json())

    client = Client(URL, "tok", transport=httpx.MockTransport(handler))

    # when
    client.job(7)
    client.job(7)

    # then
    assert [r.headers["Authorization"] for r in seen] == ["Token tok", "Token tok"]
    assert "cookie" not in seen[1].headers


def test_a_long_throttle_is_raised_at_once_with_its_wait(server: FakeServer) -> None:
    # given: the account's failed log-ins are over the limit for the next 10 minutes
    throttled = httpx.Response(
        429,
        headers={"Retry-After": "600"},
        json={"error": {"code": "throttled", "message": "Too many", "fields": {}}},
    )
    server.route("GET", "/api/v1/jobs/7/", throttled)

    with pytest.raises(ApiError) as raised:
        server.client().job(7)

    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (
        429,
        "throttled",
        600.0,
    )
    assert len(server.calls("GET")) == 1
