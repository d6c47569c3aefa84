"""The OpenAPI schema guards every endpoint: it must generate without a warning and validate."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from drf_spectacular.drainage import reset_generator_stats


def test_the_schema_generates_without_warnings_and_validates(tmp_path):
    # given
    reset_generator_stats()
    target = tmp_path / "schema.yaml"

    # when: raises SchemaGenerationError on any warning, SchemaValidationError if invalid
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))

    # then
    text = target.read_text()
    assert "/api/v1/auth/signup/:" in text
    assert "/api/v1/tokens/{token_id}/:" in text


@pytest.mark.django_db
def test_the_schema_is_served(api):
    # when
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    # then
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "CommuniPute API"
    assert "tokenAuth" in schema["components"]["securitySchemes"]
    login = schema["paths"]["/api/v1/auth/login/"]["post"]
    assert login["responses"]["4XX"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]


@pytest.mark.django_db
def test_the_docs_page_uses_our_static_files_not_a_cdn(api):
    # when
    response = api.get("/api/docs/")

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    bundle = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert bundle in assets
    assert [a for a in assets if a.startswith(("http:", "https:", "//"))] == []
    for needle in ("cdn.", "jsdelivr", "unpkg"):
        assert needle not in html
    assert finders.find(bundle.removeprefix("/static/")) is not None
