"""``communipute login``: a password once, a personal API token kept.

It logs in (``POST /api/v1/auth/login/``, which returns a short-lived token), creates a
personal token with it (``POST /api/v1/tokens/``, named after this machine), revokes the
log-in's token (``POST /api/v1/auth/logout/``) and stores only the personal one, with the URL,
in the config file (mode 0600). The password is never stored. Revoke the token in the web app
(or ``DELETE /api/v1/tokens/{id}/``) to log this machine out.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from communipute._http import Api
from communipute.config import store


def login(
    url: str,
    username: str,
    password: str,
    *,
    token_name: str | None = None,
    config: Path | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Path:
    """Log in and store a new personal token for ``url``; the config file's path."""
    url = url.rstrip("/")
    anonymous = Api(url, None, transport=transport)
    try:
        session = anonymous.json(
            "POST", "/api/v1/auth/login/", json={"username": username, "password": password}
        )
    finally:
        anonymous.close()
    short = Api(url, str(session["token"]), transport=transport)
    try:
        name = token_name or f"communipute CLI on {socket.gethostname()}"[:100]
        created = short.json("POST", "/api/v1/tokens/", json={"name": name})
        short.request("POST", "/api/v1/auth/logout/", retry=True)
    finally:
        short.close()
    return store(
        {
            "url": url,
            "token": str(created["token"]),
            "token_id": str(created["id"]),
            "username": str(session.get("user", {}).get("username", username)),
        },
        config,
    )
