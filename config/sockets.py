"""Wrappers for websocket routes."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator


def browser_socket(consumer: Any) -> Any:
    """A socket opened by a browser: session authentication and the Origin check."""
    return AllowedHostsOriginValidator(AuthMiddlewareStack(consumer))
