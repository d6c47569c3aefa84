"""``Authorization: Bearer <host credential>`` for the agent's HTTP calls (output uploads).

The credential check itself is ``hosts.services.host_authenticate``, the one the agent socket
uses; this adapts it to DRF.
"""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from hosts.services import HostAuthenticationFailed, host_authenticate


class HostAgent:
    """The principal of a request made by a host's agent (not a person)."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, host_id: int) -> None:
        self.host_id = host_id
        # Throttles key on ``user.pk``; keep agents apart from people.
        self.pk = f"host-{host_id}"


class HostCredentialAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[HostAgent, None] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid credential header.")
        try:
            key = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid credential header.") from None
        try:
            host = host_authenticate(key)
        except HostAuthenticationFailed:
            raise exceptions.AuthenticationFailed("Invalid or revoked host credential.") from None
        return HostAgent(host.pk), None

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


class IsHostAgent(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, HostAgent)
