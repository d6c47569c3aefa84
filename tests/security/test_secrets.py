"""Secrets are shown once and rest nowhere: not in the database, the logs, later responses, or
the API schema."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.apps import apps
from rest_framework.test import APIClient

from tests.hosts.factories import specs

# Every bearer secret the server mints: API tokens, enrollment tokens, host credentials, pool
# tokens.
SECRET_SHAPE = re.compile(r"\bcp[a-z]_[A-Za-z0-9_-]{40,}")


def every_row_as_text() -> str:
    """Every row of every model, Django's own (sessions, admin log) included."""
    return "\n".join(repr(list(model._default_manager.values())) for model in apps.get_models())


def secrets_minted(api: APIClient) -> tuple[list[str], APIClient]:
    """Sign up, log in, make a personal token, enroll a host and register its agent: every way
    a secret is handed out, each through the API. Returns the secrets and alice's client."""
    signup = {"username": "alice", "email": "alice@example.com", "password": "correct horse 1"}
    signed_up = api.post("/api/v1/auth/signup/", signup, format="json").json()["token"]
    login = {"username": "alice", "password": "correct horse 1"}
    logged_in = api.post("/api/v1/auth/login/", login, format="json").json()["token"]
    alice = APIClient()
    alice.credentials(HTTP_AUTHORIZATION=f"Token {signed_up}")
    personal = alice.post("/api/v1/tokens/", {"name": "ci"}, format="json").json()["token"]
    enrollment = alice.post("/api/v1/hosts/enrollments/", {}, format="json").json()["token"]
    register = {"enrollment_token": enrollment, "specs": specs(), "name": "box"}
    registered = api.post("/api/v1/agent/register/", register, format="json").json()
    credential = registered["credential"]
    # a pool token, used to join that host to alice's organisation's pool
    lab = alice.post("/api/v1/organisations/", {"name": "lab"}, format="json").json()["id"]
    pool = alice.post(f"/api/v1/organisations/{lab}/host-tokens/").json()["token"]
    joined = alice.post(
        f"/api/v1/my/hosts/{registered['host_id']}/pool/", {"token": pool}, format="json"
    )
    assert joined.status_code == 200, joined.json()
    return [signed_up, logged_in, personal, enrollment, credential, pool], alice


def test_minted_secrets_rest_nowhere(db, api, caplog):
    # given
    caplog.set_level(logging.DEBUG)

    # when
    minted, alice = secrets_minted(api)
    pages: list[Any] = [
        alice.get(path).content
        for path in ("/api/v1/auth/me/", "/api/v1/tokens/", "/api/v1/my/hosts/")
    ]

    # then
    assert [bool(SECRET_SHAPE.fullmatch(secret)) for secret in minted] == [True] * 6
    rows = every_row_as_text()
    logs = caplog.text
    assert [secret for secret in minted if secret in rows] == []
    assert [secret for secret in minted if secret in logs] == []
    assert [secret for secret in minted for page in pages if secret.encode() in page] == []


@pytest.mark.parametrize("path", ["/api/schema/", "/api/schema/?format=json"])
def test_the_schema_shows_no_secret(path, api, settings):
    # given: the deployment's secrets
    settings.STRIPE_SECRET_KEY = "sk_live_deployment-secret-1"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_deployment-secret-2"

    # when
    schema = api.get(path).content.decode()

    # then
    assert SECRET_SHAPE.search(schema) is None
    for secret in (settings.SECRET_KEY, settings.STRIPE_SECRET_KEY, "whsec_deployment"):
        assert secret not in schema
