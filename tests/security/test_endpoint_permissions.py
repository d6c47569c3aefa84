"""Every endpoint under /api/ makes a permission decision, found by walking the URL resolver.

A new endpoint is tested here without anyone writing a test for it: anonymous callers must get
401 unless the route is on the PUBLIC allow-list below; a route under ``/api/v1/admin/`` must
refuse non-staff users; and a route whose URL names an object (``<int:job_id>``, …) must answer
mallory with 404 for alice's object while alice herself gets through. A URL parameter this
module has never seen fails the test until someone says whose object it names (ALICES).
Every refusal also leaves every row of the database as it was.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_token_create, organisation_create
from hosts.models import HostStatus, HostVisibility
from jobs.models import JobOutput
from ledger.payments.payouts import connected_account_onboard
from ledger.payments.purchases import payment_create
from ledger.payments.tasks import payout_start
from ledger.services import earnings_mature, hold_capture, hold_place, wallet_credit
from tests.blobs.conftest import Tus
from tests.hosts.factories import credential_create, host_create
from tests.jobs.helpers import finished, say, submit
from tests.jobs.real_ledger import RealLedger

METHODS = ("get", "post", "put", "patch", "delete")
# Anonymous callers may use these, each for the reason given; everything else answers 401.
PUBLIC = {
    ("auth-signup", "post"): "creates the account",
    ("auth-login", "post"): "the password is the proof",
    ("auth-logout", "post"): "ends the caller's own session or token, if any",
    ("auth-csrf", "get"): "the CSRF cookie a browser needs before it signs up or logs in",
    ("agent-register", "post"): "the one-time enrollment token is the proof",
    ("stripe-webhook", "post"): "the Stripe-Signature header is the proof",
    ("schema", "get"): "the public API contract",
    ("api-docs", "get"): "the public API contract",
    ("blob-fetch", "get"): "the signed fetch token is the grant (tests/blobs)",
}
# Called by agents with a host credential, never by people (they get 403).
AGENT_ONLY = {"agent-uploads", "agent-upload"}
# A signed token in the URL is the grant, not the caller (tests/blobs/test_blobs_api.py).
TOKEN_GRANTED = {"blob-fetch"}
STAFF_PREFIX = "api/v1/admin/"
ALICES_AMOUNT_MICROS = 7_650_000
OUTPUT = b"alice-private-output\n"


@dataclass(frozen=True)
class Route:
    template: str  # "api/v1/jobs/<int:job_id>/"
    name: str
    methods: tuple[str, ...]

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"<(?:\w+:)?(\w+)>", self.template)

    def path(self, values: dict[str, Any]) -> str:
        """The route with its parameters filled in from ``values`` (1 where missing)."""

        def fill(match: re.Match[str]) -> str:
            return str(values.get(match.group(1), 1))

        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", fill, self.template)


def _walk(patterns: list[URLPattern | URLResolver], prefix: str) -> Iterator[Route]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
            continue
        view = getattr(pattern.callback, "cls", None) or getattr(
            pattern.callback, "view_class", None
        )
        methods = tuple(m for m in METHODS if view is not None and hasattr(view, m))
        yield Route(prefix + str(pattern.pattern), pattern.name or "", methods)


def api_routes() -> list[Route]:
    routes = [r for r in _walk(get_resolver().url_patterns, "") if r.template.startswith("api/")]
    unnamed = [r.template for r in routes if not r.name]
    assert not unnamed, f"name these routes: {unnamed}"
    return routes


ROUTES = api_routes()
CALLS = [(route, method) for route in ROUTES for method in route.methods]
STAFF_ONLY = {route.name for route in ROUTES if route.template.startswith(STAFF_PREFIX)}


def call_id(call: tuple[Route, str]) -> str:
    return f"{call[1].upper()} {call[0].name}"


def request(client: Any, method: str, path: str, **extra: Any) -> Any:
    if method in ("post", "put", "patch"):
        return getattr(client, method)(path, {}, format="json", **extra)
    return getattr(client, method)(path, **extra)


def answer(response: Any) -> tuple[int, Any]:
    """The status and the error code, or the start of the body where there is no error code."""
    try:
        return response.status_code, response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return response.status_code, response.content[:200]


def database_rows() -> dict[str, list[dict[str, Any]]]:
    """Every row of every model of the project's apps, to show that a refusal changed nothing."""
    rows = {}
    for model in apps.get_models():
        if model._meta.app_label in {"accounts", "ledger", "payments", "hosts", "jobs", "blobs"}:
            rows[model._meta.label] = list(model._default_manager.order_by("pk").values())
    return rows


@pytest.fixture
def alices(alice, hana, settings, django_capture_on_commit_callbacks, client_for) -> dict[str, Any]:
    """One of each of alice's things, by the URL parameter that names it."""
    alice_earns_and_pays_out(alice, renter=hana, settings=settings)
    token, _ = api_token_create(user=alice, name="alice-private-token")
    organisation = organisation_create(user=alice, name="alice-private-org").organisation
    RealLedger().fund_organisation(organisation, 5_000_000)  # it pays for its pool's jobs
    host = host_create(
        alice,
        name="alice-private-host",
        visibility=HostVisibility.PRIVATE,
        organisation=organisation,
        status=HostStatus.ONLINE,
        last_seen_at=timezone.now(),
        docker_available=True,
    )
    secret = credential_create(host)
    payment_create(user=alice, amount_micros=ALICES_AMOUNT_MICROS)
    sha = hashlib.sha256(OUTPUT).hexdigest()
    with django_capture_on_commit_callbacks(execute=True):
        # her organisation's pool is hidden: its host takes only the pool's jobs
        job = submit(alice, host=host, pool_id=organisation.pk)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
        say(host, "job.log", job_id=job.pk, attempt=1, offset=0, data="alice-private-log\n")
        outputs = [{"name": "result.csv", "size": len(OUTPUT), "sha256": sha}]
        say(host, "job.finished", **finished(job, 1, outputs=outputs))
    agent = Tus(APIClient(), "/api/v1/agent/uploads/", Authorization=f"Bearer {secret}")
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            agent.upload(OUTPUT, job_id=str(job.pk), attempt="1", name="result.csv").status_code
            == 204
        )
    own = Tus(client_for(alice)).create(10, sha256=hashlib.sha256(b"0123456789").hexdigest())
    with django_capture_on_commit_callbacks(execute=True):
        group = client_for(alice).post(
            "/api/v1/job-groups/",
            {
                "code": "print('alice-private-group')",
                "host": host.pk,
                "pool": organisation.pk,
                "count": 2,
                "max_parallel": 1,
                "task_max_cost_micros": 1_000_000,
                "max_cost_micros": 2_000_000,
            },
            format="json",
        )
    assert group.status_code == 201, group.json()
    return {
        "upload_id": own.json()["id"],
        "sha256": sha,
        "job_id": job.pk,
        "attempt": 1,
        "name": "result.csv",
        "token_id": token.pk,
        "organisation_id": organisation.pk,
        "username": alice.username,
        "host_id": host.pk,
        "group_id": group.json()["id"],
        # an output of hers (a release names one; she is no steward of her organisation)
        "release_id": JobOutput.objects.get(job=job).pk,
    }


def alice_earns_and_pays_out(alice: Any, *, renter: Any, settings: Any) -> None:
    """A payout of alice's (her earnings come from a hold of someone else's, outside jobs)."""
    settings.PAYOUT_MIN_MICROS = 10_000
    job_id, amount = 900_000_001, 500_000
    wallet_credit(user=renter, amount_micros=amount, key="earn:buy", reason="test")
    hold_place(user=renter, job_id=job_id, amount_micros=amount, key="earn:hold")
    hold_capture(
        job_id=job_id, attempt=1, host_owner=alice, gross_micros=amount, fee_micros=0, key="earn"
    )
    earnings_mature(now=timezone.now() + timedelta(days=30))
    connected_account_onboard(user=alice)
    payout_start(owner=alice, amount_micros=amount)


def test_the_walk_finds_the_endpoints_of_every_app():
    names = {route.name for route in ROUTES}
    assert {"auth-me", "wallet", "job-detail", "my-host", "host-listing", "payouts"} <= names
    assert all(route.methods for route in ROUTES), [r.name for r in ROUTES if not r.methods]


def test_every_public_or_agent_entry_names_an_endpoint_that_exists():
    calls = {(route.name, method) for route, method in CALLS}
    assert set(PUBLIC) - calls == set()
    assert AGENT_ONLY - {route.name for route in ROUTES} == set()


@pytest.mark.parametrize("call", [c for c in CALLS if (c[0].name, c[1]) not in PUBLIC], ids=call_id)
def test_anonymous_callers_get_401_and_change_nothing(call, api, alices):
    # given
    route, method = call
    before = database_rows()

    # when
    response = request(api, method, route.path(alices))

    # then
    assert answer(response) == (401, "not_authenticated")
    assert database_rows() == before


@pytest.mark.parametrize("call", [c for c in CALLS if c[0].name in STAFF_ONLY], ids=call_id)
def test_staff_reports_refuse_other_users(call, client_for, alice, staff, alices):
    # given
    route, method = call
    before = database_rows()

    # when
    refused = request(client_for(alice), method, route.path(alices))

    # then
    assert answer(refused) == (403, "permission_denied")
    assert database_rows() == before
    # staff get through (a report may still want its parameters: 400 is not a refusal)
    assert request(client_for(staff), method, route.path(alices)).status_code not in (401, 403)


@pytest.mark.parametrize(
    "call",
    [c for c in CALLS if c[0].parameters and c[0].name not in AGENT_ONLY | TOKEN_GRANTED],
    ids=call_id,
)
def test_mallory_gets_404_for_alices_objects_and_changes_nothing(
    call, client_for, alice, mallory, alices
):
    # given
    route, method = call
    unknown = set(route.parameters) - set(alices)
    assert not unknown, f"{route.template}: say in `alices` which object of alice's {unknown} is"
    path = route.path(alices)
    before = database_rows()

    # when
    response = request(client_for(mallory), method, path)

    # then
    assert answer(response) == (404, "not_found")
    assert database_rows() == before
    assert request(client_for(alice), method, path).status_code != 404


@pytest.mark.parametrize(
    "call",
    [c for c in CALLS if c[1] == "get" and not c[0].parameters and c[0].name not in STAFF_ONLY],
    ids=call_id,
)
def test_nothing_of_alices_shows_in_what_mallory_reads(call, client_for, alice, mallory, alices):
    # given
    route, method = call

    # when
    response = request(client_for(mallory), method, route.path({}))
    alices_own = request(client_for(alice), method, route.path({}))

    # then: mallory owns nothing, and nothing of alice's is public
    body = response.content.decode(errors="replace").lower()
    assert response.status_code == 200
    assert "alice" not in body
    assert str(ALICES_AMOUNT_MICROS) not in body
    if is_a_list(response):
        assert (response.json()["count"], response.json()["results"]) == (0, [])
        assert alices_own.json()["count"] > 0, "give alice one of these in `alices`"


def is_a_list(response: Any) -> bool:
    return response["Content-Type"] == "application/json" and "results" in response.json()


def agent_call(client: Any, method: str, path: str, alices: dict[str, Any], **auth: str) -> Any:
    """A tus call of an agent's: the creation names alice's job, a PATCH sends her bytes."""
    tus = Tus(client, path, **auth)
    if method == "post":
        sha = hashlib.sha256(OUTPUT).hexdigest()
        return tus.create(
            len(OUTPUT), job_id=str(alices["job_id"]), attempt="1", name="result.csv", sha256=sha
        )
    if method == "patch":
        return tus.patch(path, 0, OUTPUT)
    return tus.delete(path)


@pytest.mark.parametrize("call", [c for c in CALLS if c[0].name in AGENT_ONLY], ids=call_id)
def test_agent_endpoints_refuse_people_and_other_hosts(call, client_for, api, mallory, alices):
    # given
    route, method = call
    assert method in ("post", "patch", "delete"), "tus only so far: send this method's call here"
    secret = credential_create(host_create(mallory, name="mallory-host"))
    path = route.path(alices)
    before = database_rows()

    # when
    person = agent_call(client_for(mallory), method, path, alices)
    other_host = agent_call(api, method, path, alices, Authorization=f"Bearer {secret}")

    # then
    assert answer(person) == (403, "permission_denied")
    assert answer(other_host) == (404, "not_found")
    assert database_rows() == before


@pytest.mark.parametrize("path", ["/api/v1/quotes/", "/api/v1/jobs/"])
def test_mallory_cannot_name_alices_private_host_in_a_request(path, client_for, mallory, alices):
    # given
    RealLedger().fund(mallory, 5_000_000)
    before = database_rows()
    body = {"host": alices["host_id"], "code": "print(1)", "max_cost_micros": 1_000_000}

    # when
    response = client_for(mallory).post(path, body, format="json")

    # then: as for a host that doesn't exist
    assert answer(response) == (400, "unknown_host")
    assert database_rows() == before
