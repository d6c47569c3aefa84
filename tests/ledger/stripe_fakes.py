"""Test stand-ins for Stripe, spoken to over real HTTP by the real ``stripe`` library.

- ``Localstripe``: the stateful fake Stripe server from PyPI, run as a subprocess on a free
  loopback port. PaymentIntents, refunds and signed ``payment_intent.succeeded`` webhooks.
- ``FakeConnect``: localstripe has no Connect, so this small server speaks Stripe's wire format
  for accounts, account links and transfers, records every request with its idempotency key,
  replays a key's first success like Stripe does, and fails transfers on demand.
- ``event_sign``: signs an event the way Stripe does, for events localstripe never sends
  (``charge.refunded``, disputes, ``account.updated``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

# localstripe pickles its whole store to the fixed path /tmp/localstripe.pickle after every
# write; parallel test runs on one machine would fight over that file. Nothing needs it.
_LOCALSTRIPE_MAIN = (
    "import sys; from localstripe import resources; "
    "resources.Store.dump_to_disk = lambda self: None; "
    "from localstripe.server import start; sys.exit(start())"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"localstripe did not listen on port {port} within {timeout}s")


class Localstripe:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _LOCALSTRIPE_MAIN, "--port", str(self.port), "--from-scratch"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until_listening(self.port, self.process, timeout=30)
        self.url = f"http://127.0.0.1:{self.port}"

    def webhook_register(self, url: str, secret: str) -> None:
        """Point localstripe's webhooks at ``url``, signed with ``secret``."""
        request = urllib.request.Request(
            f"{self.url}/_config/webhooks/communipute",
            data=json.dumps({"url": url, "secret": secret}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def event_sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send with ``payload``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


_ids = itertools.count(1)


def stripe_event(
    event_type: str, data_object: dict[str, Any], *, account: str | None = None
) -> dict[str, Any]:
    """A Stripe event envelope around ``data_object``, with a fresh id; ``account`` for an
    event of a connected account (what the Connect endpoint receives)."""
    envelope: dict[str, Any] = {
        "id": f"evt_test_{next(_ids)}_{int(time.time() * 1000)}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "api_version": "2025-01-27.acacia",
        "data": {"object": data_object},
    }
    if account is not None:
        envelope["account"] = account
    return envelope


@dataclass
class RecordedRequest:
    method: str
    path: str
    idempotency_key: str | None
    params: dict[str, str]


@dataclass
class PlannedFailure:
    status: int
    error_type: str
    message: str


@dataclass
class FakeConnectState:
    requests: list[RecordedRequest] = field(default_factory=list)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    replies_by_key: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    transfer_failures: list[PlannedFailure] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _ConnectHandler(BaseHTTPRequestHandler):
    server: _ConnectServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_{next(_ids)}")
        self.end_headers()
        self.wfile.write(data)

    def _record(self, params: dict[str, str]) -> RecordedRequest:
        recorded = RecordedRequest(
            self.command, self.path, self.headers.get("Idempotency-Key"), params
        )
        self.server.state.requests.append(recorded)
        return recorded

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            self._record({})
            if self.path.startswith("/v1/accounts/"):
                account = state.accounts.get(self.path.removeprefix("/v1/accounts/"))
                if account is not None:
                    self._reply(200, account)
                    return
            self._reply(404, _error("invalid_request_error", "No such object"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        params = dict(parse_qsl(self.rfile.read(length).decode()))
        state = self.server.state
        with state.lock:
            recorded = self._record(params)
            key = f"{self.path}|{recorded.idempotency_key}"
            if recorded.idempotency_key and key in state.replies_by_key:
                self._reply(*state.replies_by_key[key])
                return
            status, body = self._handle(params)
            if recorded.idempotency_key and status == 200:
                state.replies_by_key[key] = (status, body)
            self._reply(status, body)

    def _handle(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        if self.path == "/v1/accounts":
            account_id = f"acct_fake{next(_ids)}"
            state.accounts[account_id] = {
                "id": account_id,
                "object": "account",
                "type": params.get("type"),
                "email": params.get("email"),
                "details_submitted": False,
                "payouts_enabled": False,
                "capabilities": {"transfers": "inactive"},
                "metadata": {"user_id": params.get("metadata[user_id]")},
            }
            return 200, state.accounts[account_id]
        if self.path == "/v1/account_links":
            account_id = params["account"]
            return 200, {
                "object": "account_link",
                "url": f"https://connect.stripe.test/setup/e/{account_id}/{next(_ids)}",
                "created": int(time.time()),
                "expires_at": int(time.time()) + 300,
            }
        if self.path == "/v1/transfers":
            if state.transfer_failures:
                failure = state.transfer_failures.pop(0)
                return failure.status, _error(failure.error_type, failure.message)
            transfer_id = f"tr_fake{next(_ids)}"
            state.transfers[transfer_id] = {
                "id": transfer_id,
                "object": "transfer",
                "amount": int(params["amount"]),
                "currency": params["currency"],
                "destination": params["destination"],
                "transfer_group": params.get("transfer_group"),
                "metadata": {"payout_id": params.get("metadata[payout_id]")},
            }
            return 200, state.transfers[transfer_id]
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({self.path})")


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message}}


class _ConnectServer(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeConnectState


class FakeConnect:
    def __init__(self) -> None:
        self.server = _ConnectServer(("127.0.0.1", 0), _ConnectHandler)
        self.server.state = FakeConnectState()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def state(self) -> FakeConnectState:
        return self.server.state

    def account_complete(self, account_id: str) -> dict[str, Any]:
        """What Stripe shows once the owner has finished onboarding."""
        with self.state.lock:
            account = self.state.accounts[account_id]
            account.update(
                details_submitted=True, payouts_enabled=True, capabilities={"transfers": "active"}
            )
            return dict(account)

    def transfers_fail(self, *failures: PlannedFailure) -> None:
        with self.state.lock:
            self.state.transfer_failures.extend(failures)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self.state.lock:
            return [r for r in self.state.requests if (r.method, r.path) == (method, path)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
