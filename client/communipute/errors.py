"""What the SDK raises. Everything is a ``CommuniputeError``; the server's refusals are
``ApiError`` with the fields of its error envelope (docs/api.md, "Errors")."""

from __future__ import annotations

from typing import Any


class CommuniputeError(Exception):
    """The base of every error this package raises on purpose."""


class ConfigError(CommuniputeError):
    """No server or token is configured, or the config file can't be read."""


class ConnectionFailed(CommuniputeError):
    """The server could not be reached (or the connection broke) after the retries."""


class ApiError(CommuniputeError):
    """The server refused a request: its HTTP ``status`` and the envelope's ``code`` (stable
    snake_case: branch on it), ``message`` (for people) and ``fields`` (a field or header
    name -> its messages, ``{}`` unless the input was bad)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, list[str]] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = f"{self.message} ({self.status} {self.code})"
        for name, messages in self.fields.items():
            text += f"\n  {name}: {'; '.join(messages)}"
        return text


class AuthenticationFailed(ApiError):
    """401: no token, or one that was revoked or expired (``communipute login`` again)."""


class InsufficientCredits(ApiError):
    """402: the wallet does not cover the job's cap (``insufficient_credits``), and the other
    402s of docs/api.md."""


class NotFound(ApiError):
    """404: absent, or not yours (the server does not tell the difference)."""


class JobWaitTimeout(CommuniputeError, TimeoutError):
    """``Job.wait(timeout=...)`` gave up; the job goes on (``job`` is the last seen state)."""

    def __init__(self, job: Any, timeout: float) -> None:
        super().__init__(f"job {job.id} is still {job.status} after {timeout:g} s")
        self.job = job
        self.timeout = timeout


class UploadFailed(CommuniputeError):
    """An input or code upload could not be completed (the connection kept failing)."""


def api_error(
    status: int,
    body: Any,
    *,
    reason: str = "",
    retry_after: float | None = None,
) -> ApiError:
    """The typed error for a refused response: ``body`` is its parsed JSON (or None)."""
    code, message, fields = f"http_{status}", reason or f"HTTP {status}", {}
    envelope = body.get("error") if isinstance(body, dict) else None
    if isinstance(envelope, dict):
        code = str(envelope.get("code") or code)
        message = str(envelope.get("message") or message)
        given = envelope.get("fields")
        if isinstance(given, dict):
            fields = {
                str(name): [str(m) for m in value] if isinstance(value, list) else [str(value)]
                for name, value in given.items()
            }
    kind = {401: AuthenticationFailed, 402: InsufficientCredits, 404: NotFound}.get(
        status, ApiError
    )
    return kind(status, code, message, fields, retry_after=retry_after)
