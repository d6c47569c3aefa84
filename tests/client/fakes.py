"""A stand-in CommuniPute server for the SDK's unit tests, behind ``httpx.MockTransport``.

It keeps what the real one keeps for tus uploads (offset, bytes, whose blobs), answers in the
real error envelope, and can be told to cut a connection: mid-PATCH before the server stored
the part (the part is lost, as daphne never passes a cut body on), or after it stored it (the
answer is lost). Every request is logged as ``(method, path, headers)`` for the test to read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from communipute import Client

URL = "http://cp.test"
TOKEN = "tok-renter"


def envelope(status: int, code: str, message: str, **fields: list[str]) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "fields": fields}}
    return httpx.Response(status, json=body)


@dataclass
class FakeUpload:
    id: str
    sha256: str
    length: int
    data: bytearray = field(default_factory=bytearray)

    @property
    def offset(self) -> int:
        return len(self.data)


class FakeServer:
    def __init__(self) -> None:
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[bytes] = []
        self.queries: list[str] = []
        self.uploads: dict[str, FakeUpload] = {}
        self.blobs: dict[str, bytes] = {}
        # What the next PATCHes do: "ok", "cut" (mid-body, nothing stored), "lost" (stored,
        # the answer lost), "mismatch" (409 offset_mismatch), "locked" (423).
        self.patch_plan: list[str] = []
        self.chunk_max = 8 * 1024 * 1024
        self.forget_uploads = False
        self.routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = {}

    # --- wiring -------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self, **kwargs: Any) -> Client:
        client = Client(URL, TOKEN, transport=self.transport(), progress=False, **kwargs)
        client._api.sleep = lambda seconds: None
        return client

    def route(self, method: str, path: str, answer: Any) -> None:
        """Answer ``method path`` with ``answer``: a Response, a JSON body, or a function
        of the request (a list: one item per call, the last repeated)."""
        answers = answer if isinstance(answer, list) else [answer]

        def respond(request: httpx.Request) -> httpx.Response:
            given = answers.pop(0) if len(answers) > 1 else answers[0]
            if callable(given):
                given = given(request)
            if isinstance(given, Exception):
                raise given
            return given if isinstance(given, httpx.Response) else httpx.Response(200, json=given)

        self.routes[(method, path)] = respond

    def sent(self, method: str, path: str) -> list[Any]:
        """The JSON bodies of the requests to ``method path``, in order."""
        return [
            json.loads(body)
            for (m, p, _), body in zip(self.log, self.bodies, strict=True)
            if (m, p) == (method, path)
        ]

    def calls(self, method: str | None = None, path: str | None = None) -> list[str]:
        return [
            f"{m} {p}"
            for m, p, _ in self.log
            if (method is None or m == method) and (path is None or p.startswith(path))
        ]

    # --- the server ---------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.log.append((method, path, dict(request.headers)))
        self.queries.append(request.url.query.decode())
        # the body of each request, in step with ``log`` (a PATCH's is streamed: not kept)
        self.bodies.append(b"" if method == "PATCH" else request.read())
        if request.headers.get("Authorization") != f"Token {TOKEN}":
            return envelope(
                401, "not_authenticated", "Authentication credentials were not provided."
            )
        if method == "PATCH" and path.startswith("/api/v1/uploads/"):
            return self._patch(request, path.rsplit("/", 2)[-2])
        route = self.routes.get((method, path))
        if route is not None:
            return route(request)
        if method == "POST" and path == "/api/v1/uploads/":
            return self._create(request)
        if method == "HEAD" and path.startswith("/api/v1/uploads/"):
            upload = self.uploads.get(path.rsplit("/", 2)[-2])
            if upload is None or self.forget_uploads:
                return envelope(404, "not_found", "no such upload")
            return httpx.Response(200, headers=self._tus(upload))
        if method == "GET" and path.startswith("/api/v1/blobs/"):
            sha256 = path.rsplit("/", 2)[-2]
            if sha256 in self.blobs:
                return httpx.Response(200, json={"sha256": sha256, "size": len(self.blobs[sha256])})
            return envelope(404, "not_found", "no such blob")
        return envelope(404, "not_found", f"no route {method} {path}")

    def _tus(self, upload: FakeUpload) -> dict[str, str]:
        return {
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(upload.offset),
            "Upload-Length": str(upload.length),
        }

    def _create(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Tus-Resumable"] == "1.0.0"
        meta = dict(pair.split(" ", 1) for pair in request.headers["Upload-Metadata"].split(","))
        sha256 = base64.b64decode(meta["sha256"]).decode()
        length = int(request.headers["Upload-Length"])
        upload = FakeUpload(uuid.uuid4().hex, sha256, length)
        if sha256 in self.blobs:  # held already: complete at once
            upload.data = bytearray(self.blobs[sha256])
        self.uploads[upload.id] = upload
        headers = {**self._tus(upload), "Location": f"/api/v1/uploads/{upload.id}/"}
        status = "complete" if upload.offset == length else "receiving"
        return httpx.Response(201, headers=headers, json={"id": upload.id, "status": status})

    def _patch(self, request: httpx.Request, upload_id: str) -> httpx.Response:
        upload = self.uploads.get(upload_id)
        if upload is None:
            return envelope(404, "not_found", "no such upload")
        plan = self.patch_plan.pop(0) if self.patch_plan else "ok"
        length = int(request.headers["Content-Length"])
        if length > self.chunk_max:
            return envelope(413, "chunk_too_large", "too big", **{"Content-Length": ["."]})
        if plan == "mismatch" or int(request.headers["Upload-Offset"]) != upload.offset:
            return envelope(409, "offset_mismatch", f"the upload is at {upload.offset}")
        if plan == "locked":
            return envelope(423, "locked", "another PATCH holds the upload")
        received = bytearray()
        for chunk in request.stream:  # type: ignore[union-attr]
            received += chunk
            if plan == "cut" and len(received) >= length // 2:
                raise httpx.WriteError("connection cut mid-PATCH")
        assert len(received) == length
        upload.data += received
        if upload.offset == upload.length:
            if hashlib.sha256(upload.data).hexdigest() != upload.sha256:
                return envelope(400, "digest_mismatch", "the bytes do not hash to sha256")
            self.blobs[upload.sha256] = bytes(upload.data)
        if plan == "lost":
            raise httpx.ReadError("connection cut before the answer")
        return httpx.Response(204, headers=self._tus(upload))


def job_json(job_id: int = 7, **overrides: Any) -> dict[str, Any]:
    """A job as ``GET /api/v1/jobs/{id}/`` shows it."""
    data: dict[str, Any] = {
        "id": job_id,
        "status": "queued",
        "status_reason": "",
        "queue_position": 1,
        "waiting_reason": "",
        "attempt": 0,
        "max_attempts": 3,
        "placement": "auto",
        "requested_host": None,
        "host": None,
        "host_isolation": "",
        "entrypoint": "main.py",
        "name": "main.py",
        "requirements": [],
        "cpus": 1.0,
        "memory_mb": 512,
        "gpus": 0,
        "timeout_seconds": 3600,
        "max_cost_micros": 1_000_000,
        "cost_micros": 0,
        "inputs": [],
        "exit_code": None,
        "cancel_requested": False,
        "created_at": "2026-11-25T14:10:00.123456Z",
        "queued_at": "2026-11-25T14:10:00Z",
        "started_at": None,
        "finished_at": None,
    }
    data.update(overrides)
    return data
