from __future__ import annotations

import pytest

from accounts.models import IdempotencyRecord
from accounts.services import api_token_create, organisation_create


@pytest.mark.parametrize("model", ["user", "apitoken", "organisation", "idempotencyrecord"])
def test_changelists_load(admin_client, alice, model):
    # given
    api_token_create(user=alice, name="laptop")
    organisation_create(user=alice, name="Physics Lab")

    # when
    response = admin_client.get(f"/admin/accounts/{model}/")

    # then
    assert response.status_code == 200


def test_a_token_page_shows_the_digest_read_only_and_no_plaintext(admin_client, alice):
    # given
    token, plaintext = api_token_create(user=alice, name="laptop")

    # when
    response = admin_client.get(f"/admin/accounts/apitoken/{token.pk}/change/")

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert token.digest in html
    assert plaintext not in html
    assert 'name="digest"' not in html
    assert admin_client.get("/admin/accounts/apitoken/add/").status_code == 403


def test_the_revoke_action(admin_client, alice):
    # given
    token, _ = api_token_create(user=alice, name="laptop")

    # when
    response = admin_client.post(
        "/admin/accounts/apitoken/",
        {"action": "revoke", "_selected_action": [str(token.pk)]},
    )

    # then
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_idempotency_records_cannot_be_added(admin_client):
    assert admin_client.get("/admin/accounts/idempotencyrecord/add/").status_code == 403
    assert IdempotencyRecord.objects.count() == 0
