"""Request bodies are refused by size before they are read (docs/api.md, "Size limits").

Django's ASGI handler reads a whole request body (into memory, then a temporary file) before
any middleware or view runs, so a size check in a view comes after the bytes arrived. This
ASGI middleware sits in front: a declared ``Content-Length`` over the route's limit is 413 at
once, without reading a byte; a body without one, or longer than it said, is counted while it
streams and cut off at the limit (Django sees a disconnect and stops), then answered 413.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Any, Any, Any], Awaitable[None]]

# A tus PATCH (docs/data.md): the renters' uploads and the agents' outputs.
_UPLOAD_PATCH = re.compile(r"^/api/v1/(agent/)?uploads/[0-9a-f-]{36}/$")
_JOB_SUBMIT = re.compile(r"^/api/v1/jobs/$")


def body_limit(method: str, path: str) -> int:
    """The most bytes a request body to ``path`` may have."""
    if method == "PATCH" and _UPLOAD_PATCH.match(path):
        return int(settings.BLOB_UPLOAD_CHUNK_MAX_BYTES)
    if method == "POST" and _JOB_SUBMIT.match(path):
        return int(settings.JOB_SUBMIT_MAX_BODY_BYTES)
    return int(settings.REQUEST_MAX_BODY_BYTES)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.decode("latin1").strip()
            return int(text) if text.isdigit() else None
    return None


def _refusal_code(method: str, path: str) -> str:
    """A tus PATCH over the chunk limit is the engine's own refusal, chunk_too_large."""
    if method == "PATCH" and _UPLOAD_PATCH.match(path):
        return "chunk_too_large"
    return "request_too_large"


async def _refuse(send: Send, limit: int, code: str = "request_too_large") -> None:
    body = json.dumps(
        {
            "error": {
                "code": code,
                "message": f"the request body is larger than {limit} bytes",
                "fields": {},
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Wraps the HTTP application (config.asgi); see the module docstring."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = str(scope.get("method", "")), str(scope.get("path", ""))
        limit = body_limit(method, path)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit, _refusal_code(method, path))
            return
        state = {"received": 0, "refused": False, "started": False}

        async def limited_receive() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["refused"] = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, tracked_send)
        if state["refused"] and not state["started"]:
            await _refuse(send, limit, _refusal_code(method, path))
