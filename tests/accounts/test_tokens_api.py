from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import api_token_create
from accounts.tokens import PREFIX_LENGTH, secret_digest

TOKENS = "/api/v1/tokens/"
ME = "/api/v1/auth/me/"


def _by_token(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return client


@pytest.mark.django_db
def test_create_shows_the_plaintext_once_and_stores_only_its_digest(client_for, alice):
    # given
    expires_at = timezone.now() + timedelta(days=7)
    client = client_for(alice)

    # when
    response = client.post(
        TOKENS, {"name": "laptop", "expires_at": expires_at.isoformat()}, format="json"
    )

    # then
    assert response.status_code == 201
    body = response.json()
    token = ApiToken.objects.get(user=alice)
    plaintext = body["token"]
    assert plaintext.startswith("cpt_")
    assert body == {
        "id": token.pk,
        "name": "laptop",
        "prefix": plaintext[:PREFIX_LENGTH],
        "created_at": body["created_at"],
        "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
        "last_used_at": None,
        "token": plaintext,
    }
    assert token.digest == secret_digest(plaintext)
    assert plaintext not in {token.digest, token.prefix, token.name}
    # the list never shows it again
    listed = client.get(TOKENS).json()["results"]
    assert [set(item) for item in listed] == [
        {"id", "name", "prefix", "created_at", "expires_at", "last_used_at"}
    ]
    # and it authenticates
    assert _by_token(plaintext).get(ME).json()["username"] == "alice"


@pytest.mark.django_db
def test_create_without_expiry(client_for, alice):
    # when
    response = client_for(alice).post(TOKENS, {"name": "ci"}, format="json")

    # then
    assert response.status_code == 201
    assert response.json()["expires_at"] is None
    assert ApiToken.objects.get(user=alice).expires_at is None


@pytest.mark.django_db
def test_create_refuses_an_expiry_in_the_past(client_for, alice):
    # given
    past = timezone.now() - timedelta(seconds=1)

    # when
    response = client_for(alice).post(
        TOKENS, {"name": "old", "expires_at": past.isoformat()}, format="json"
    )

    # then
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "expires_at must be in the future.",
            "fields": {"expires_at": ["Must be in the future."]},
        }
    }
    assert ApiToken.objects.count() == 0


@pytest.mark.django_db
def test_create_needs_a_name(client_for, alice):
    # when
    response = client_for(alice).post(TOKENS, {}, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"name": ["This field is required."]}
    assert ApiToken.objects.count() == 0


@pytest.mark.django_db
def test_list_shows_only_my_live_tokens_newest_first(client_for, alice, mallory):
    # given
    older, _ = api_token_create(user=alice, name="older")
    newer, _ = api_token_create(user=alice, name="newer")
    revoked, _ = api_token_create(user=alice, name="revoked")
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    api_token_create(user=mallory, name="mallory's")

    # when
    body = client_for(alice).get(TOKENS).json()

    # then
    assert body["count"] == 2
    assert body["next"] is None
    assert body["previous"] is None
    assert [item["id"] for item in body["results"]] == [newer.pk, older.pk]


@pytest.mark.django_db
def test_revoke_sets_revoked_at_and_the_token_stops_working(client_for, alice):
    # given
    token, plaintext = api_token_create(user=alice, name="laptop")
    assert _by_token(plaintext).get(ME).status_code == 200

    # when
    response = client_for(alice).delete(f"{TOKENS}{token.pk}/")

    # then
    assert response.status_code == 204
    token.refresh_from_db()
    assert token.revoked_at is not None
    refused = _by_token(plaintext).get(ME)
    assert refused.status_code == 401
    assert refused.json()["error"] == {
        "code": "authentication_failed",
        "message": "Invalid or revoked token.",
        "fields": {},
    }
    # revoking twice: it is gone
    assert client_for(alice).delete(f"{TOKENS}{token.pk}/").status_code == 404


@pytest.mark.django_db
def test_mallory_cannot_revoke_or_see_alices_token(client_for, alice, mallory):
    # given
    token, plaintext = api_token_create(user=alice, name="laptop")
    attacker = client_for(mallory)

    # when
    response = attacker.delete(f"{TOKENS}{token.pk}/")

    # then
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "No such token.", "fields": {}}
    }
    token.refresh_from_db()
    assert token.revoked_at is None
    assert _by_token(plaintext).get(ME).status_code == 200
    assert attacker.get(TOKENS).json()["count"] == 0


@pytest.mark.django_db
def test_an_expired_token_gets_401(alice):
    # given
    token, plaintext = api_token_create(
        user=alice, name="short", expires_at=timezone.now() + timedelta(minutes=1)
    )
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    # when
    response = _by_token(plaintext).get(ME)

    # then
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "authentication_failed",
        "message": "Token has expired.",
        "fields": {},
    }
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
def test_a_made_up_token_gets_401(alice):
    # given
    _, plaintext = api_token_create(user=alice, name="real")
    forged = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")

    # when
    response = _by_token(forged).get(ME)

    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.django_db
def test_using_a_token_records_last_used_at(alice):
    # given
    token, plaintext = api_token_create(user=alice, name="laptop")

    # when
    _by_token(plaintext).get(ME)

    # then
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.django_db
def test_token_authentication_costs_one_query(alice, django_assert_num_queries):
    # given: a token used a moment ago (last_used_at is written at most once a minute)
    _, plaintext = api_token_create(user=alice, name="laptop")
    client = _by_token(plaintext)
    client.get(ME)

    # when / then: one SELECT of the token joined with its user
    with django_assert_num_queries(1):
        assert client.get(ME).status_code == 200


@pytest.mark.django_db
def test_tokens_need_authentication(api, alice):
    # when
    response = api.post(TOKENS, {"name": "x"}, format="json")

    # then
    assert response.status_code == 401
    assert ApiToken.objects.count() == 0
