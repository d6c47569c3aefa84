"""Where the client finds its server and token, and what ``communipute login`` keeps: the
personal token only (never the password, nor the log-in's own token, which it revokes), in a
file only its owner can read."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from communipute import Client, ConfigError, login
from communipute.config import settings_resolve


@pytest.fixture(autouse=True)
def config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No COMMUNIPUTE_URL or _TOKEN; the config file in the test's folder."""
    for name in ("COMMUNIPUTE_URL", "COMMUNIPUTE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "conf" / "client.json"
    monkeypatch.setenv("COMMUNIPUTE_CONFIG", str(path))
    return path


def login_server(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path, auth = request.url.path, request.headers.get("Authorization")
        if path == "/api/v1/auth/login/":
            assert auth is None
            assert json.loads(request.content) == {"username": "ana", "password": "pw"}
            return httpx.Response(
                200,
                json={"user": {"username": "ana"}, "token": "short", "expires_at": "x"},
                headers={"Set-Cookie": "sessionid=s; Path=/"},
            )
        if path == "/api/v1/tokens/":
            assert auth == "Token short"
            assert "cookie" not in request.headers
            return httpx.Response(201, json={"id": 12, "name": "n", "token": "personal"})
        if path == "/api/v1/auth/logout/":
            assert auth == "Token short"
            return httpx.Response(204)
        return httpx.Response(
            404, json={"error": {"code": "not_found", "message": "", "fields": {}}}
        )

    return httpx.MockTransport(handler)


def test_login_keeps_the_personal_token_in_a_file_only_its_owner_reads(
    config_file: Path,
) -> None:
    # when
    seen: list[httpx.Request] = []
    path = login("http://cp.test/", "ana", "pw", transport=login_server(seen))

    # then: logged in, a personal token made, the log-in's token revoked
    assert [request.url.path for request in seen] == [
        "/api/v1/auth/login/",
        "/api/v1/tokens/",
        "/api/v1/auth/logout/",
    ]
    assert json.loads(seen[1].content)["name"].startswith("communipute CLI on ")
    # and the file holds the URL and the personal token, mode 0600 in a 0700 folder
    assert path == config_file
    assert json.loads(path.read_text()) == {
        "url": "http://cp.test",
        "token": "personal",
        "token_id": "12",
        "username": "ana",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "pw" not in path.read_text()
    # which a Client then uses
    assert settings_resolve().token == "personal"


def test_the_environment_comes_before_the_file_and_arguments_before_both(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.parent.mkdir()
    config_file.write_text(json.dumps({"url": "http://a.test", "token": "from-file"}))
    assert settings_resolve().token == "from-file"

    monkeypatch.setenv("COMMUNIPUTE_TOKEN", "from-env")
    assert (settings_resolve().url, settings_resolve().token) == ("http://a.test", "from-env")
    assert settings_resolve(token="given").token == "given"


def test_a_stored_token_is_never_sent_to_another_server(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.parent.mkdir()
    config_file.write_text(json.dumps({"url": "http://a.test", "token": "for-a"}))

    with pytest.raises(ConfigError, match=r"no API token for http://b\.test"):
        Client("http://b.test")
    monkeypatch.setenv("COMMUNIPUTE_URL", "http://b.test")
    with pytest.raises(ConfigError, match="no API token"):
        Client()


def test_nothing_configured_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="communipute login"):
        Client()


def test_a_broken_config_file_is_a_config_error(config_file: Path) -> None:
    config_file.parent.mkdir()
    config_file.write_text("{not json")

    with pytest.raises(ConfigError, match="not JSON"):
        Client()
