"""The catch-all that serves the built web app (config/spa.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from accounts.models import User

INDEX = (
    "<!doctype html><html><head><title>CommuniPute</title>"
    '<script type="module" src="/static/assets/index-AbCd1234.js"></script></head>'
    '<body><div id="root"></div></body></html>'
)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text(INDEX)
    (folder / "assets" / "index-AbCd1234.js").write_text("console.log('app')")
    return folder


def _config(html: str) -> dict[str, object]:
    match = re.search(r'<script id="cp-config" type="application/json">(.*?)</script>', html)
    assert match is not None
    loaded: dict[str, object] = json.loads(match.group(1))
    return loaded


@pytest.mark.parametrize("path", ["/", "/catalog", "/jobs/12", "/hosts/3", "/reports?x=1"])
def test_app_routes_get_the_index_with_config_and_csrf_cookie(
    client: Client, dist: Path, path: str
) -> None:
    # given a built app
    with override_settings(FRONTEND_DIST_DIR=dist, PAYMENT_PROVIDER="demo"):
        # when a browser opens an app route
        response = client.get(path)
    # then it gets the app's page, with the page config and a CSRF cookie for the API
    assert response.status_code == 200
    html = response.content.decode()
    assert '<div id="root"></div>' in html
    assert "/static/assets/index-AbCd1234.js" in html
    config = _config(html)
    assert config["payment_provider"] == "demo"
    assert config["stripe_js_url"] is None
    assert config["user"] is None
    assert "csrftoken" in response.cookies
    assert response["Cache-Control"] == "no-cache"


def test_config_names_stripe_js_only_for_stripe_and_is_escaped(client: Client, dist: Path) -> None:
    # given Stripe payments and a hostile-looking publishable key
    with override_settings(
        FRONTEND_DIST_DIR=dist,
        PAYMENT_PROVIDER="stripe",
        STRIPE_PUBLISHABLE_KEY="pk_</script><script>alert(1)</script>",
        STRIPE_JS_URL="http://127.0.0.1:8420/js.stripe.com/v3/",
    ):
        # when the page is served
        html = client.get("/wallet").content.decode()
    # then the config carries both, and nothing can break out of the JSON script element
    config = _config(html)
    assert config["payment_provider"] == "stripe"
    assert config["stripe_js_url"] == "http://127.0.0.1:8420/js.stripe.com/v3/"
    assert config["stripe_publishable_key"] == "pk_</script><script>alert(1)</script>"
    assert "<script>alert(1)" not in html


def test_config_names_the_logged_in_user(client: Client, dist: Path, staff: User) -> None:
    # given a logged-in staff member
    client.force_login(staff)
    with override_settings(FRONTEND_DIST_DIR=dist):
        # when the app is opened
        html = client.get("/reports").content.decode()
    # then the app knows who it is without asking the API
    assert _config(html)["user"] == {
        "id": staff.pk,
        "username": "sam",
        "email": "sam@example.com",
        "is_staff": True,
    }


def test_missing_build_says_how_to_build_it(client: Client, tmp_path: Path) -> None:
    # given no frontend/dist
    with override_settings(FRONTEND_DIST_DIR=tmp_path / "nothing"):
        # when an app route is opened
        response = client.get("/catalog")
    # then the page says what to run
    assert response.status_code == 503
    assert "make frontend" in response.content.decode()


@pytest.mark.parametrize(
    "path", ["/api/v1/no-such-thing/", "/api/nope", "/static/assets/missing.js", "/ws/jobs/1/"]
)
def test_reserved_paths_are_never_answered_by_the_app(
    client: Client, dist: Path, path: str
) -> None:
    # given a built app
    with override_settings(FRONTEND_DIST_DIR=dist):
        # when a path of the API, static files or sockets does not exist
        response = client.get(path)
    # then it is a plain 404, not the app's page
    assert response.status_code == 404
    assert b'id="cp-config"' not in response.content


def test_admin_is_not_shadowed(client: Client, dist: Path) -> None:
    with override_settings(FRONTEND_DIST_DIR=dist):
        response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b'id="cp-config"' not in response.content


def test_only_safe_methods(client: Client, dist: Path) -> None:
    with override_settings(FRONTEND_DIST_DIR=dist):
        response = client.post("/catalog")
    assert response.status_code == 405


def test_collectstatic_gathers_the_build(dist: Path, tmp_path: Path) -> None:
    # given the build as a static files dir
    root = tmp_path / "staticfiles"
    with override_settings(STATICFILES_DIRS=[dist], STATIC_ROOT=root):
        # when collectstatic runs
        call_command("collectstatic", interactive=False, verbosity=0)
    # then the hashed assets land where whitenoise serves /static/assets/ from
    assert (root / "assets" / "index-AbCd1234.js").read_text() == "console.log('app')"
    assert (root / "index.html").is_file()
