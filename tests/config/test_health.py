"""GET /healthz, the load balancer's check: it answers without the database."""

from __future__ import annotations

from django.test import Client


def test_healthz_answers_ok_without_touching_the_database() -> None:
    # no django_db marker: pytest-django fails any query this test makes
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert response["Cache-Control"] == "no-store"


def test_healthz_takes_only_safe_methods() -> None:
    assert Client().post("/healthz").status_code == 405
    assert Client().head("/healthz").status_code == 200
