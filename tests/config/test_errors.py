"""Every error leaves the API as {"error": {"code", "message", "fields"}} (API.md)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken, User

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.config.error_urls")]


def _error(code: str, message: str, fields: dict[str, object] | None = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def test_400_names_the_fields(client_for, alice):
    # when
    response = client_for(alice).post("/api/v1/tokens/", {"expires_at": "soon"}, format="json")

    # then
    assert response.status_code == 400
    assert response.json() == _error(
        "invalid",
        "name: This field is required.",
        {
            "name": ["This field is required."],
            "expires_at": [
                "Datetime has wrong format. Use one of these formats instead: "
                "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
            ],
        },
    )
    assert ApiToken.objects.count() == 0


def test_400_for_malformed_json(client_for, alice):
    # when
    response = client_for(alice).post(
        "/api/v1/tokens/", "{not json", content_type="application/json"
    )

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert response.json()["error"]["message"].startswith("JSON parse error")
    assert ApiToken.objects.count() == 0


def test_401_without_credentials(api):
    # when
    response = api.get("/api/v1/auth/me/")

    # then
    assert response.status_code == 401
    assert response.json() == _error(
        "not_authenticated", "Authentication credentials were not provided."
    )
    assert response["WWW-Authenticate"] == "Token"


def test_401_for_a_bad_token(api):
    # when
    response = api.get("/api/v1/auth/me/", HTTP_AUTHORIZATION="Token cpt_nope")

    # then
    assert response.status_code == 401
    assert response.json() == _error("authentication_failed", "Invalid or revoked token.")


def test_403_for_a_session_write_without_csrf(alice):
    # given
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(alice)

    # when
    response = browser.post("/api/v1/tokens/", {"name": "x"}, format="json")

    # then
    assert response.status_code == 403
    assert response.json() == _error("permission_denied", "CSRF Failed: CSRF cookie not set.")
    assert ApiToken.objects.count() == 0


def test_403_from_django_permission_denied(client_for, alice):
    # when
    response = client_for(alice).get("/api/test/django-permission-denied/")

    # then
    assert response.status_code == 403
    assert response.json() == _error(
        "permission_denied", "You do not have permission to perform this action."
    )


def test_404_from_a_service(client_for, alice):
    # when
    response = client_for(alice).delete("/api/v1/tokens/999999/")

    # then
    assert response.status_code == 404
    assert response.json() == _error("not_found", "No such token.")


def test_404_from_django_http404(client_for, alice):
    # when
    response = client_for(alice).get("/api/test/django-not-found/")

    # then
    assert response.status_code == 404
    assert response.json() == _error("not_found", "Not found.")


def test_404_for_an_unknown_api_url(api):
    # when
    response = api.get("/api/v1/no-such-thing/")

    # then
    assert response.status_code == 404
    assert response.json() == _error("not_found", "Not found.")


def test_404_outside_the_api_stays_html(api):
    # when (app routes like /no-such-page/ belong to the web app's catch-all: config/spa.py)
    response = api.get("/static/no-such-file.js")

    # then
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_405_for_a_wrong_method(api):
    # when
    response = api.get("/api/v1/auth/signup/")

    # then
    assert response.status_code == 405
    assert response.json() == _error("method_not_allowed", 'Method "GET" not allowed.')


def test_415_for_an_unsupported_content_type(api):
    # when
    response = api.post("/api/v1/auth/signup/", "hello", content_type="text/plain")

    # then
    assert response.status_code == 415
    assert response.json() == _error(
        "unsupported_media_type", 'Unsupported media type "text/plain" in request.'
    )
    assert User.objects.count() == 0


def test_an_unhandled_service_error(client_for, alice):
    # when
    response = client_for(alice).get("/api/test/service-error/")

    # then
    assert response.status_code == 400
    assert response.json() == _error("invalid", "Something is off.", {"thing": ["Off."]})


def test_a_service_error_subclass_keeps_its_status_and_code(client_for, alice):
    # when
    response = client_for(alice).get("/api/test/conflict/")

    # then
    assert response.status_code == 409
    assert response.json() == _error("taken", "Someone else got there first.")


def test_500_for_a_crash(alice):
    # given
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(alice)

    # when
    response = client.get("/api/test/crash/")

    # then
    assert response.status_code == 500
    assert response.json() == _error("server_error", "Internal server error.")


@pytest.fixture(params=[False, True], ids=["DEBUG off", "DEBUG on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def test_404_for_an_unknown_api_url_whatever_debug_is(api, debug):
    # when
    response = api.get("/api/v1/no-such-thing/")

    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == _error("not_found", "Not found.")


def test_405_whatever_debug_is(api, debug):
    # when
    response = api.get("/api/v1/auth/signup/")

    # then
    assert response.status_code == 405
    assert response.json() == _error("method_not_allowed", 'Method "GET" not allowed.')


def test_500_for_a_crash_whatever_debug_is(alice, debug):
    # given
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(alice)

    # when
    response = client.get("/api/test/crash/")

    # then
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == _error("server_error", "Internal server error.")


def test_413_for_a_body_over_the_limit_whatever_debug_is(client_for, alice, settings, debug):
    # given a 15 MB body (the general limit is 10 MiB)
    body = b'{"name": "' + b"x" * (15 * 1024 * 1024) + b'"}'

    # when
    response = client_for(alice).post("/api/v1/tokens/", body, content_type="application/json")

    # then
    assert response.status_code == 413
    assert response.json() == _error(
        "request_too_large",
        f"the request body is larger than {settings.REQUEST_MAX_BODY_BYTES} bytes",
    )
    assert ApiToken.objects.count() == 0


def test_413_outside_drf_views_too(api, settings, debug):
    # given a form body over the limit to a URL no view matches
    body = "username=" + "x" * (11 * 1024 * 1024)

    # when
    response = api.post(
        "/api/v1/no-such-thing/", body, content_type="application/x-www-form-urlencoded"
    )

    # then (no view reads it: the unknown URL is what answers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_an_html_error_outside_the_api_stays_html(api, debug):
    # when
    response = api.get("/static/no-such-file.js")

    # then
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("required", ["required"]),
        (1234, ["1234"]),
        (["a", "b"], ["a", "b"]),
        ([{}, {"path": ["This field is required."]}], ["item 2, path: This field is required."]),
        ({"content_b64": "not valid base64"}, ["content_b64: not valid base64"]),
        ([{"non_field_errors": ["give one"]}], ["item 1: give one"]),
    ],
)
def test_fields_always_map_a_field_to_a_list_of_messages(given, expected):
    # when
    from config.api import error_body

    body = error_body("invalid", "x", {"field": given})

    # then
    assert body["error"]["fields"] == {"field": expected}
