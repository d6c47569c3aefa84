"""Every websocket route of the real ASGI application makes a permission decision.

Browser sockets sit behind the Origin check and answer only their object's owner; agent
sockets take a live host credential. A new route that is neither fails the first test.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.forms.models import model_to_dict
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from agent.protocol import CLOSE_UNAUTHORIZED
from config.asgi import application
from config.sockets import SameOriginValidator
from hosts import services
from hosts.models import Host, HostStatus
from tests.hosts.factories import credential_create, host_create
from tests.jobs.group_steps import group_body
from tests.jobs.helpers import submit
from tests.jobs.real_ledger import RealLedger

pytestmark = pytest.mark.django_db(transaction=True)

AGENT_SOCKETS = {"ws/agent/"}
TIMEOUT = 3


def socket_routes() -> list[tuple[str, Any]]:
    router = application.application_mapping["websocket"]
    return [(str(route.pattern), route.callback) for route in router.routes]


BROWSER_SOCKETS = [
    template for template, app in socket_routes() if isinstance(app, SameOriginValidator)
]


def path_of(template: str, values: dict[str, Any]) -> str:
    def fill(match: re.Match[str]) -> str:
        return str(values[match.group(1)])

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", fill, template)


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def browser_connect(
    path: str, user=None, origin: str | None = "http://testserver", host: str = "testserver"
):
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if user is not None:
        cookie = await sync_to_async(session_cookie)(user)
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    socket = WebsocketCommunicator(application, path, headers)
    connected, code = await socket.connect(timeout=TIMEOUT)
    if connected:
        await socket.disconnect()
    return connected, code


@pytest.fixture
def alices(alice, hana) -> dict[str, Any]:
    """alice's objects, by the route parameter that names them."""
    RealLedger().fund(alice, 5_000_000)
    host_create(hana, status=HostStatus.ONLINE, last_seen_at=timezone.now(), docker_available=True)
    client = APIClient()
    client.force_authenticate(alice)
    group = client.post("/api/v1/job-groups/", group_body(count=1, max_parallel=1), format="json")
    assert group.status_code == 201, group.json()
    return {"job_id": submit(alice).pk, "group_id": group.json()["id"]}


def test_every_socket_is_behind_the_origin_check_or_is_an_agent_socket():
    routes = socket_routes()
    unchecked = {t for t, app in routes if not isinstance(app, SameOriginValidator)}
    assert unchecked == AGENT_SOCKETS
    assert "ws/jobs/<int:job_id>/" in BROWSER_SOCKETS


@pytest.mark.parametrize("template", BROWSER_SOCKETS)
async def test_browser_sockets_answer_the_owner_only(template, alices, alice, mallory):
    # given
    unknown = set(re.findall(r"<(?:\w+:)?(\w+)>", template)) - set(alices)
    assert not unknown, f"{template}: say in `alices` which object of alice's {unknown} is"
    path = path_of(template, alices)

    # when
    anonymous = await browser_connect(path)
    mallorys = await browser_connect(path, mallory)
    foreign = await browser_connect(path, alice, origin="https://evil.example")
    no_origin = await browser_connect(path, alice, origin=None)
    alices_own = await browser_connect(path, alice)

    # then
    assert [anonymous[0], mallorys[0], foreign[0], no_origin[0], alices_own[0]] == [
        False,
        False,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("origin", "host", "connected"),
    [
        ("http://localhost:8000", "localhost:8000", True),
        ("http://localhost:9999", "localhost:8000", False),
        ("http://localhost", "localhost:8000", False),
        ("http://localhost:80", "localhost", True),
        ("https://localhost", "localhost", True),
        ("https://localhost", "localhost:80", False),
        ("http://evil.example:8000", "evil.example:8000", False),
        ("null", "localhost:8000", False),
    ],
)
async def test_the_origin_check_includes_the_port(alices, alice, origin, host, connected):
    # given alice's own job socket, opened with her session
    path = path_of("ws/jobs/<int:job_id>/", alices)

    # when
    result = await browser_connect(path, alice, origin=origin, host=host)

    # then a page on another port of the same host (or another, unlisted host) is refused
    assert result[0] is connected


async def test_csrf_trusted_origins_are_matched_exactly(alices, alice, settings):
    # given
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example:8443"]
    path = path_of("ws/jobs/<int:job_id>/", alices)

    # when
    trusted = await browser_connect(path, alice, origin="https://app.example:8443")
    other_port = await browser_connect(path, alice, origin="https://app.example")

    # then
    assert (trusted[0], other_port[0]) == (True, False)


async def host_row(host_id: int) -> dict[str, Any]:
    row: dict[str, Any] = await database_sync_to_async(
        lambda: model_to_dict(Host.objects.get(pk=host_id))
    )()
    return row


async def agent_connect(bearer: str | None) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {bearer}".encode())] if bearer else []
    socket = WebsocketCommunicator(application, "/ws/agent/", headers)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected  # accepted so that the close can carry its code
    return socket


@pytest.mark.parametrize("bearer", ["none", "made-up", "revoked"])
async def test_the_agent_socket_needs_a_live_credential(bearer, hana):
    # given
    host = await database_sync_to_async(host_create)(hana)
    secret = await database_sync_to_async(credential_create)(host)
    if bearer == "revoked":
        await database_sync_to_async(services.credential_revoke)(owner=hana, host_id=host.pk)
    before = await host_row(host.pk)
    given = {"none": None, "made-up": "cph_" + "x" * 43, "revoked": secret}[bearer]

    # when
    socket = await agent_connect(given)
    closed = await socket.receive_output(TIMEOUT)

    # then
    assert (closed["type"], closed["code"]) == ("websocket.close", CLOSE_UNAUTHORIZED)
    assert await host_row(host.pk) == before


async def test_the_agent_socket_stays_open_with_a_live_credential(hana):
    host = await database_sync_to_async(host_create)(hana)
    socket = await agent_connect(await database_sync_to_async(credential_create)(host))
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()
