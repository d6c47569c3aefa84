"""Small real servers for the agent's data-plane tests: an HTTPS blob server with Range (and
cuts, redirects, counted requests) and a fake tus 1.0 upload server. Loopback only."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import re
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NAMES = ("localhost", "blobs.example")


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    server_context: ssl.SSLContext

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def tls_make(directory: Path) -> Tls:
    """A CA and a server certificate for localhost, blobs.example and 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in NAMES]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return Tls(ca_file, context)


@dataclass
class BlobState:
    blobs: dict[str, bytes] = field(default_factory=dict)  # path -> bytes
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    headers: list[dict[str, str]] = field(default_factory=list)  # each request's headers
    cut_after: dict[str, list[int]] = field(default_factory=dict)  # path -> cut points, in turn
    redirects: dict[str, str] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)  # path -> forced status
    ignore_range: bool = False
    # Send this many bytes of the body, then hang (until the event is set or the client goes).
    stall_after: int | None = None
    stall_release: threading.Event = field(default_factory=threading.Event)


class _BlobHandler(BaseHTTPRequestHandler):
    state: BlobState
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        state = self.state
        state.requests.append((self.path, self.headers.get("Range")))
        state.headers.append(dict(self.headers))
        if self.path in state.redirects:
            self.send_response(302)
            self.send_header("Location", state.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path in state.status:
            self.send_response(state.status[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = state.blobs.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if state.stall_after is not None:
            self.wfile.write(body[: state.stall_after])
            self.wfile.flush()
            state.stall_release.wait(30)
            self.close_connection = True
            return
        cuts = state.cut_after.get(self.path)
        if cuts:
            self.wfile.write(body[: cuts.pop(0)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # cuts and refused handshakes are what these tests make happen


class Served:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.port = server.server_address[1]
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def blob_server_start(tls: Tls | None, state: BlobState) -> Served:
    handler = type("Handler", (_BlobHandler,), {"state": state})
    server = _QuietServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.server_context.wrap_socket(server.socket, server_side=True)
    return Served(server)


# --- a fake tus 1.0 server (the contract's agent uploads) --------------------------------------


@dataclass
class TusUpload:
    length: int
    metadata: dict[str, str]
    data: bytearray = field(default_factory=bytearray)


@dataclass
class TusState:
    uploads: dict[str, TusUpload] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    # PATCH number (1, 2, ... as they arrive) -> bytes of its body read before hanging up.
    cut_patches: dict[int, int] = field(default_factory=dict)
    patches: int = 0
    create_status: int = 201
    complete_at_once: bool = False  # the owner holds the blob already
    patch_status: list[int] = field(default_factory=list)  # forced answers to PATCHes, in turn
    forget: bool = False  # the next HEAD finds the upload expired: removed, 404


class _TusHandler(BaseHTTPRequestHandler):
    state: TusState
    protocol_version = "HTTP/1.1"

    def _answer(
        self, status: int, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        self.send_response(status)
        self.send_header("Tus-Resumable", "1.0.0")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _record(self) -> None:
        self.state.requests.append((self.command, self.path, dict(self.headers.items())))

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != "Bearer cph_secret":
            self._answer(401, body=b'{"error": {"code": "unauthorized"}}')
            return False
        if self.headers.get("Tus-Resumable") != "1.0.0":
            self._answer(412)
            return False
        return True

    def do_POST(self) -> None:
        self._record()
        if not self._authorized():
            return
        if self.path != "/api/v1/agent/uploads/":
            self._answer(404)
            return
        metadata = {}
        for pair in (self.headers.get("Upload-Metadata") or "").split(","):
            key, _, value = pair.partition(" ")
            metadata[key] = base64.b64decode(value).decode()
        if self.state.create_status != 201:
            body = b'{"error": {"code": "invalid", "message": "refused"}}'
            self._answer(self.state.create_status, body=body)
            return
        length = int(self.headers["Upload-Length"])
        upload_id = uuid.uuid4().hex
        upload = TusUpload(length, metadata)
        if self.state.complete_at_once:
            upload.data = bytearray(b"\0" * length)
        self.state.uploads[upload_id] = upload
        self._answer(
            201,
            {
                "Location": f"/api/v1/agent/uploads/{upload_id}/",
                "Upload-Offset": str(len(upload.data)),
            },
        )

    def _upload(self) -> TusUpload | None:
        match = re.fullmatch(r"/api/v1/agent/uploads/([0-9a-f]+)/", self.path)
        if match and self.command == "HEAD" and self.state.forget:
            self.state.forget = False
            self.state.uploads.pop(match.group(1), None)
        upload = self.state.uploads.get(match.group(1)) if match else None
        if upload is None:
            self._answer(404)
            return None
        return upload

    def do_HEAD(self) -> None:
        self._record()
        if not self._authorized():
            return
        upload = self._upload()
        if upload is not None:
            self._answer(
                200,
                {
                    "Upload-Offset": str(len(upload.data)),
                    "Upload-Length": str(upload.length),
                    "Cache-Control": "no-store",
                },
            )

    def do_PATCH(self) -> None:
        self._record()
        if not self._authorized():
            return
        upload = self._upload()
        if upload is None:
            return
        length = int(self.headers["Content-Length"])
        self.state.patches += 1
        if self.state.patch_status:
            self.rfile.read(length)
            self._answer(self.state.patch_status.pop(0))
            return
        if int(self.headers["Upload-Offset"]) != len(upload.data):
            self.rfile.read(length)
            self._answer(409, body=b'{"error": {"code": "offset_mismatch"}}')
            return
        cut = self.state.cut_patches.pop(self.state.patches, None)
        if cut is not None:
            self.rfile.read(cut)  # then hang up: nothing of this PATCH is stored
            self.close_connection = True
            self.connection.shutdown(2)
            return
        body = self.rfile.read(length)
        if len(upload.data) + len(body) > upload.length:
            self._answer(413)
            return
        upload.data.extend(body)
        self._answer(204, {"Upload-Offset": str(len(upload.data))})

    def log_message(self, *args: Any) -> None:
        pass


def tus_server_start(state: TusState) -> Served:
    handler = type("Handler", (_TusHandler,), {"state": state})
    server = _QuietServer(("127.0.0.1", 0), handler)
    return Served(server)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
