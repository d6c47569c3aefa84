"""``Authorization: Bearer <host credential>`` for the agent's HTTP calls (output uploads).

INTEGRATION POINT: the hosts branch builds ``host_authenticate`` for the same credential;
once it is on main this class should call it instead of reading HostCredential itself.
"""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from accounts.tokens import PREFIX_LENGTH, secret_matches
from hosts.models import HostCredential


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

    def authenticate(self, request: Request) -> tuple[HostAgent, HostCredential] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid credential header.")
        try:
            key = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid credential header.") from None
        credential = HostCredential.objects.filter(
            prefix=key[:PREFIX_LENGTH], revoked_at__isnull=True
        ).first()
        if credential is None or not secret_matches(key, credential.digest):
            raise exceptions.AuthenticationFailed("Invalid or revoked host credential.")
        return HostAgent(credential.host_id), credential

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


class IsHostAgent(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, HostAgent)
