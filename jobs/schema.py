"""OpenAPI description of the agent's credential on jobs endpoints (imported by JobsConfig)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class HostCredentialScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "jobs.authentication.HostCredentialAuthentication"
    name = "hostCredential"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The host agent's credential (`Authorization: Bearer cph_…`).",
        }
