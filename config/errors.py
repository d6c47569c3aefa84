"""Domain errors raised by services and mapped to the API's error format by config.api.

A service raises one of these with a stable snake_case ``code``; views never build error
bodies by hand.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refusal the caller can understand: bad input, a conflict, not enough credits."""

    status_code = 400
    default_code = "invalid"

    def __init__(
        self, message: str, *, code: str | None = None, fields: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.fields = fields or {}


class ValidationFailed(ServiceError):
    status_code = 400
    default_code = "invalid"


class PermissionDenied(ServiceError):
    status_code = 403
    default_code = "permission_denied"


class NotFound(ServiceError):
    status_code = 404
    default_code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    default_code = "conflict"


class InsufficientCredits(ServiceError):
    status_code = 402
    default_code = "insufficient_credits"


class TooLarge(ServiceError):
    status_code = 413
    default_code = "too_large"


class Unprocessable(ServiceError):
    status_code = 422
    default_code = "unprocessable"


class PreconditionFailed(ServiceError):
    status_code = 412
    default_code = "precondition_failed"
