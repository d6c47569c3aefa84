"""Wrappers for websocket routes."""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlsplit

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin, the port filled in from the scheme."""
    try:
        parts: SplitResult = urlsplit(url.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def origin_is_allowed(origin: str | None, host_header: str | None) -> bool:
    """A browser socket's Origin must be this site's own origin, port included.

    Same origin: the Origin's host *and port* equal the Host the socket was opened on, and that
    host is in ``ALLOWED_HOSTS``. (Channels' ``AllowedHostsOriginValidator`` compares host names
    only, so a page served from ``http://localhost:9999`` could open ``localhost:8000``'s
    sockets with the visitor's session.) Other origins only if ``CSRF_TRUSTED_ORIGINS`` names
    them exactly, the same list the HTTP side trusts.
    """
    if origin is None:
        return False
    parsed = _origin_of(origin)
    if parsed is None:
        return False
    if parsed in {_origin_of(trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    if not host_header:
        return False
    domain, port = split_domain_port(host_header.lower())
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme, hostname, origin_port = parsed
    host_port = int(port) if port.isdigit() else _DEFAULT_PORTS[scheme]
    return hostname.strip("[]") == domain.strip("[]") and origin_port == host_port


class SameOriginValidator:
    """Refuses a browser socket whose Origin is not this site's (see ``origin_is_allowed``)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        origin, host = headers.get(b"origin"), headers.get(b"host")
        if origin_is_allowed(
            origin.decode("latin1") if origin is not None else None,
            host.decode("latin1") if host is not None else None,
        ):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


def browser_socket(consumer: Any) -> Any:
    """A socket opened by a browser: session authentication and the same-origin check."""
    return SameOriginValidator(AuthMiddlewareStack(consumer))
