"""The pool endpoints (docs/pools.md, docs/api.md): settings, members, pool tokens, hosts
joining and leaving, the catalog's ?pool=, the audit trail. Every refusal changes nothing."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError, transaction
from django.forms.models import model_to_dict
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Membership, MembershipRole, Organisation, User
from hosts.models import Host, PoolEnrollmentToken
from hosts.pool_services import OPEN_ATTEMPT_STATUSES
from jobs.audit_models import PoolAuditEvent
from jobs.services.audit import files_sha256, requirements_sha256
from jobs.states import ATTEMPT_OPEN
from tests.jobs.helpers import finished, say, submit
from tests.jobs.real_ledger import RealLedger

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def people(db: None) -> dict[str, User]:
    def user(name: str) -> User:
        return User.objects.create_user(username=name, email=f"{name}@example.com", password="x")

    return {name: user(name) for name in ("ada", "bob", "stu", "olga", "hana")}


@pytest.fixture
def lab(people: dict[str, User]) -> Organisation:
    """ada admins it; bob is a member, stu a steward, hana (who owns hosts) a member; olga is
    outside."""
    lab = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=lab, user=people["ada"], role=MembershipRole.ADMIN)
    Membership.objects.create(organisation=lab, user=people["bob"])
    Membership.objects.create(organisation=lab, user=people["stu"], is_steward=True)
    Membership.objects.create(organisation=lab, user=people["hana"])
    RealLedger().fund_organisation(lab, 10_000_000)  # the lab pays for its pool jobs
    return lab


def _client(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def _state(lab: Organisation) -> dict[str, Any]:
    """Everything a refusal must leave as it was."""
    return {
        "organisation": model_to_dict(Organisation.objects.get(pk=lab.pk)),
        "members": list(Membership.objects.order_by("pk").values()),
        "hosts": list(Host.objects.order_by("pk").values()),
        "tokens": list(PoolEnrollmentToken.objects.order_by("pk").values()),
        "audit": list(PoolAuditEvent.objects.order_by("pk").values()),
    }


# --- settings --------------------------------------------------------------------------------


def test_members_read_the_pool_settings_and_outsiders_get_404(people, lab):
    # when
    answers = {
        name: _client(people[name]).get(f"/api/v1/organisations/{lab.pk}/pool/")
        for name in ("ada", "bob", "stu", "olga")
    }
    anonymous = _client(None).get(f"/api/v1/organisations/{lab.pk}/pool/")

    # then
    assert {name: r.status_code for name, r in answers.items()} == {
        "ada": 200,
        "bob": 200,
        "stu": 200,
        "olga": 404,
    }
    assert answers["bob"].json() == {
        "required": False,
        "hidden": True,
        "fetch_networks": [],
        "fetch_hosts": [],
        "job_networks": [],
        "members_free": False,
        "output_store": {},
        "logs": "central",
        "airlock": False,
    }
    assert anonymous.status_code == 401


def test_an_admin_changes_the_settings_and_the_trail_records_old_and_new(people, lab):
    # given
    change = {
        "required": True,
        "fetch_networks": ["10.20.0.0/16", "fd00:1::/64"],
        "fetch_hosts": ["Data.Lab.Example.org", "*.lab.example.org"],
        "job_networks": ["10.30.0.0/24"],
        "output_store": {
            "endpoint_url": "https://s3.lab.example.org",
            "bucket": "lab-outputs",
            "prefix": "communipute/",
            "region": "eu-west-1",
        },
        "airlock": True,
        "hidden": True,  # unchanged: not in the trail
    }

    # when
    response = _client(people["ada"]).patch(
        f"/api/v1/organisations/{lab.pk}/pool/", change, format="json"
    )

    # then
    assert response.status_code == 200, response.json()
    lab.refresh_from_db()
    assert lab.pool_fetch_hosts == ["data.lab.example.org", "*.lab.example.org"]
    assert lab.pool_fetch_networks == ["10.20.0.0/16", "fd00:1::/64"]
    assert (lab.pool_required, lab.pool_airlock) == (True, True)
    assert response.json()["output_store"]["bucket"] == "lab-outputs"
    [event] = PoolAuditEvent.objects.all()
    assert (event.kind, event.actor_id, event.organisation_id) == (
        "pool.settings_changed",
        people["ada"].pk,
        lab.pk,
    )
    assert event.detail["changes"]["required"] == {"old": False, "new": True}
    assert event.detail["changes"]["job_networks"] == {"old": [], "new": ["10.30.0.0/24"]}
    assert set(event.detail["changes"]) == {
        "required",
        "fetch_networks",
        "fetch_hosts",
        "job_networks",
        "output_store",
        "airlock",
    }


@pytest.mark.parametrize("who", ["bob", "stu", "olga", None])
def test_only_admins_change_settings_and_a_refusal_changes_nothing(people, lab, who):
    # given
    before = _state(lab)

    # when
    response = _client(people[who] if who else None).patch(
        f"/api/v1/organisations/{lab.pk}/pool/", {"required": True}, format="json"
    )

    # then
    assert response.status_code == {"bob": 403, "stu": 403, "olga": 404, None: 401}[who]
    assert _state(lab) == before


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"job_networks": ["0.0.0.0/0"]}, ["job_networks"]),
        ({"job_networks": ["::/0"]}, ["job_networks"]),
        ({"job_networks": ["0.0.0.0/1", "128.0.0.0/1"]}, ["job_networks"]),
        ({"fetch_networks": ["10.1.2.3/16"]}, ["fetch_networks"]),
        ({"fetch_networks": ["not-a-net"]}, ["fetch_networks"]),
        ({"fetch_hosts": ["bad_name.example.org"]}, ["fetch_hosts"]),
        ({"fetch_hosts": ["*.org"]}, ["fetch_hosts"]),
        ({"fetch_hosts": ["10.0.0.1"]}, ["fetch_hosts"]),
        ({"fetch_hosts": "data.example.org"}, ["fetch_hosts"]),
        (
            {"output_store": {"endpoint_url": "ftp://x.org", "bucket": "ok-bucket"}},
            ["output_store.endpoint_url"],
        ),
        (
            {"output_store": {"endpoint_url": "https://k:s@x.org", "bucket": "ok-bucket"}},
            ["output_store.endpoint_url"],
        ),
        (
            {"output_store": {"endpoint_url": "https://x.org", "bucket": "Bad_Bucket"}},
            ["output_store.bucket"],
        ),
        (
            {"output_store": {"endpoint_url": "https://x.org", "bucket": "192.168.1.1"}},
            ["output_store.bucket"],
        ),
        (
            {
                "output_store": {
                    "endpoint_url": "https://x.org",
                    "bucket": "ok-bucket",
                    "secret": "s",
                }
            },
            ["output_store.secret"],
        ),
        (
            {"output_store": {"endpoint_url": "https://x.org", "bucket": "ok-b", "prefix": "/abs"}},
            ["output_store.prefix"],
        ),
        ({"airlock": True}, ["airlock"]),
        ({"logs": "store"}, ["logs"]),
        ({"logs": "everywhere"}, ["logs"]),
        ({"required": "yes"}, ["required"]),
        ({"colour": "blue"}, ["colour"]),
        (
            {"job_networks": ["0.0.0.0/0"], "fetch_hosts": ["-x-.org"], "required": 1},
            ["fetch_hosts", "job_networks", "required"],
        ),
    ],
)
def test_bad_settings_are_refused_with_every_field_named_and_nothing_changes(
    people, lab, change, fields
):
    # given
    before = _state(lab)

    # when
    response = _client(people["ada"]).patch(
        f"/api/v1/organisations/{lab.pk}/pool/", {"hidden": False, **change}, format="json"
    )

    # then
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == "invalid_pool_settings"
    assert sorted(response.json()["error"]["fields"]) == fields
    assert _state(lab) == before


def test_hiding_the_pool_makes_its_public_hosts_private(people, lab, make_host):
    # given: a visible pool with a public host
    Organisation.objects.filter(pk=lab.pk).update(pool_hidden=False)
    host = make_host(people["hana"], "lab-box", organisation=lab, visibility="public")

    # when
    response = _client(people["ada"]).patch(
        f"/api/v1/organisations/{lab.pk}/pool/", {"hidden": True}, format="json"
    )

    # then
    assert response.status_code == 200
    host.refresh_from_db()
    assert host.visibility == "private"


# --- members ---------------------------------------------------------------------------------


def test_an_admin_sets_a_members_steward_flag_and_monthly_cap(people, lab):
    # when
    response = _client(people["ada"]).patch(
        f"/api/v1/organisations/{lab.pk}/members/bob/",
        {"is_steward": True, "monthly_cap_micros": 25_000_000},
        format="json",
    )
    uncapped = _client(people["ada"]).patch(
        f"/api/v1/organisations/{lab.pk}/members/stu/", {"monthly_cap_micros": None}, format="json"
    )

    # then
    assert response.status_code == 200, response.json()
    assert response.json() == {
        **response.json(),
        "username": "bob",
        "role": "member",
        "is_steward": True,
        "monthly_cap_micros": 25_000_000,
    }
    assert uncapped.status_code == 200
    bob = Membership.objects.get(organisation=lab, user=people["bob"])
    assert (bob.is_steward, bob.monthly_cap_micros) == (True, 25_000_000)


@pytest.mark.parametrize(
    ("who", "target", "change", "status"),
    [
        ("bob", "stu", {"is_steward": False}, 403),
        ("stu", "bob", {"is_steward": True}, 403),
        ("bob", "bob", {"role": "admin"}, 403),
        ("olga", "bob", {"is_steward": True}, 404),
        (None, "bob", {"is_steward": True}, 401),
        ("ada", "ada", {"role": "member"}, 409),
        ("ada", "bob", {"monthly_cap_micros": -1}, 400),
        ("ada", "bob", {"monthly_cap_micros": 1.5}, 400),
        ("ada", "bob", {"role": "owner"}, 400),
        ("ada", "nobody", {"is_steward": True}, 404),
    ],
)
def test_member_changes_are_refused_for_the_wrong_caller_or_input_and_change_nothing(
    people, lab, who, target, change, status
):
    # given
    before = _state(lab)

    # when
    response = _client(people[who] if who else None).patch(
        f"/api/v1/organisations/{lab.pk}/members/{target}/", change, format="json"
    )

    # then
    assert response.status_code == status, response.json()
    assert _state(lab) == before


# --- pool tokens, joining, leaving -------------------------------------------------------------


def _token(people, lab) -> str:
    response = _client(people["ada"]).post(f"/api/v1/organisations/{lab.pk}/host-tokens/")
    assert response.status_code == 201, response.json()
    return str(response.json()["token"])


@pytest.mark.parametrize(
    ("who", "status"), [("bob", 403), ("stu", 403), ("olga", 404), (None, 401)]
)
def test_only_admins_issue_pool_tokens(people, lab, who, status):
    # given
    before = _state(lab)

    # when
    response = _client(people[who] if who else None).post(
        f"/api/v1/organisations/{lab.pk}/host-tokens/"
    )

    # then
    assert response.status_code == status
    assert _state(lab) == before


def test_a_host_joins_a_hidden_pool_with_a_token_becomes_private_and_the_trail_says_so(
    people, lab, make_host
):
    # given
    host = make_host(people["olga"], "olgas-box")  # an outsider's machine: the token vouches
    issued = _client(people["ada"]).post(f"/api/v1/organisations/{lab.pk}/host-tokens/")
    token = issued.json()["token"]

    # when
    response = _client(people["olga"]).post(
        f"/api/v1/my/hosts/{host.pk}/pool/", {"token": token}, format="json"
    )

    # then
    assert response.status_code == 200, response.json()
    assert (response.json()["organisation"], response.json()["visibility"]) == (lab.pk, "private")
    assert issued.json()["expires_at"] > timezone.now().isoformat()
    stored = PoolEnrollmentToken.objects.get()
    assert stored.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(list(PoolEnrollmentToken.objects.values()), default=str)
    assert (stored.used_at is not None, stored.host_id) == (True, host.pk)
    [event] = PoolAuditEvent.objects.all()
    assert (event.kind, event.actor_id, event.host_id) == (
        "host.joined",
        people["olga"].pk,
        host.pk,
    )


def test_a_used_expired_or_unknown_token_or_someone_elses_host_changes_nothing(
    people, lab, make_host
):
    # given
    first = make_host(people["hana"], "first")
    second = make_host(people["hana"], "second")
    used = _token(people, lab)
    assert (
        _client(people["hana"])
        .post(f"/api/v1/my/hosts/{first.pk}/pool/", {"token": used}, format="json")
        .status_code
        == 200
    )
    expired = _token(people, lab)
    PoolEnrollmentToken.objects.filter(host__isnull=True).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    fresh = _token(people, lab)
    before = _state(lab)
    hana = _client(people["hana"])

    # when
    answers = {
        "used": hana.post(f"/api/v1/my/hosts/{second.pk}/pool/", {"token": used}, format="json"),
        "expired": hana.post(
            f"/api/v1/my/hosts/{second.pk}/pool/", {"token": expired}, format="json"
        ),
        "unknown": hana.post(
            f"/api/v1/my/hosts/{second.pk}/pool/", {"token": fresh[:-3] + "xyz"}, format="json"
        ),
        "not hers": _client(people["olga"]).post(
            f"/api/v1/my/hosts/{second.pk}/pool/", {"token": fresh}, format="json"
        ),
        "already in": hana.post(
            f"/api/v1/my/hosts/{first.pk}/pool/", {"token": fresh}, format="json"
        ),
        "no token": hana.post(f"/api/v1/my/hosts/{second.pk}/pool/", {}, format="json"),
    }

    # then
    assert {k: (r.status_code, r.json()["error"]["code"]) for k, r in answers.items()} == {
        "used": (400, "invalid_token"),
        "expired": (400, "invalid_token"),
        "unknown": (400, "invalid_token"),
        "not hers": (404, "not_found"),
        "already in": (409, "already_in_pool"),
        "no token": (400, "invalid"),
    }
    assert answers["used"].json()["error"]["fields"] == {
        "token": ["this pool token was already used"]
    }
    assert answers["expired"].json()["error"]["fields"] == {
        "token": ["this pool token has expired"]
    }
    assert _state(lab) == before


def test_the_owners_settings_cannot_put_a_host_into_a_pool(people, lab, make_host):
    # given: hana is a member of lab, but has no pool token
    host = make_host(people["hana"], "box")
    before = _state(lab)

    # when
    into = _client(people["hana"]).patch(
        f"/api/v1/my/hosts/{host.pk}/",
        {"visibility": "private", "organisation": lab.pk},
        format="json",
    )
    private = _client(people["hana"]).patch(
        f"/api/v1/my/hosts/{host.pk}/", {"visibility": "private"}, format="json"
    )

    # then
    assert into.status_code == 400
    assert list(into.json()["error"]["fields"]) == ["organisation"]
    assert private.status_code == 400
    assert list(private.json()["error"]["fields"]) == ["organisation"]
    assert _state(lab) == before


def test_a_hidden_pools_host_stays_private_until_it_leaves(people, lab, make_host):
    # given
    host = make_host(people["hana"], "box", organisation=lab, visibility="private")
    before = _state(lab)

    # when
    public = _client(people["hana"]).patch(
        f"/api/v1/my/hosts/{host.pk}/", {"visibility": "public"}, format="json"
    )

    # then
    assert public.status_code == 400
    assert list(public.json()["error"]["fields"]) == ["visibility"]
    assert _state(lab) == before


def test_a_host_leaves_only_once_its_pool_jobs_ended(
    people, lab, make_host, ledger, committed, wire
):
    # given: the pool's host runs a pool job of bob's
    host = make_host(people["hana"], "box", organisation=lab, visibility="private")
    ledger.fund(people["bob"], 10_000_000)
    with committed():
        job = submit(people["bob"], pool_id=lab.pk)
        say(host, "job.accept", job_id=job.pk, attempt=1)
    hana = _client(people["hana"])
    before = _state(lab)

    # when
    refused = hana.delete(f"/api/v1/my/hosts/{host.pk}/pool/")
    after_refusal = _state(lab)
    with committed():
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
        say(host, "job.finished", **finished(job, 1))
    left = hana.delete(f"/api/v1/my/hosts/{host.pk}/pool/")
    again = hana.delete(f"/api/v1/my/hosts/{host.pk}/pool/")

    # then
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "pool_jobs_open")
    assert after_refusal == before
    assert left.status_code == 200, left.json()
    assert (left.json()["organisation"], left.json()["visibility"]) == (None, "public")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "not_in_pool")
    assert PoolAuditEvent.objects.filter(kind="host.left", host_id=host.pk).count() == 1


def test_the_open_attempt_statuses_hosts_knows_are_the_jobs_apps():
    assert set(OPEN_ATTEMPT_STATUSES) == {status.value for status in ATTEMPT_OPEN}


# --- the catalog -------------------------------------------------------------------------------


def test_the_catalog_shows_a_hidden_pools_hosts_to_members_only_and_filters_by_pool(
    people, lab, make_host
):
    # given: a hidden pool host, even one whose column says public, and a public host
    pooled = make_host(people["hana"], "pooled", organisation=lab, visibility="private")
    odd = make_host(people["hana"], "odd", organisation=lab, visibility="public")
    public = make_host(people["hana"], "public")

    def ids(user: User, query: str = "") -> Any:
        response = _client(user).get(f"/api/v1/hosts/{query}")
        if response.status_code != 200:
            return response.status_code, response.json()["error"]["code"]
        return sorted(h["id"] for h in response.json()["results"])

    # then
    assert ids(people["olga"]) == [public.pk]
    assert ids(people["bob"]) == sorted([pooled.pk, odd.pk, public.pk])
    assert ids(people["bob"], f"?pool={lab.pk}") == sorted([pooled.pk, odd.pk])
    assert ids(people["olga"], f"?pool={lab.pk}") == (400, "unknown_pool")
    assert _client(people["olga"]).get(f"/api/v1/hosts/{odd.pk}/").status_code == 404


# --- the audit trail ---------------------------------------------------------------------------


@pytest.fixture
def pool_job(people, lab, make_host, ledger, committed, wire):
    host = make_host(people["hana"], "box", organisation=lab, visibility="private")
    ledger.fund(people["bob"], 10_000_000)
    with committed():
        job = submit(people["bob"], pool_id=lab.pk, requirements=["numpy==2.1.0"])
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
        say(host, "job.finished", **finished(job, 1))
    job.refresh_from_db()
    return job


def test_a_pool_job_is_recorded_when_submitted_and_when_it_ends(people, lab, pool_job):
    # when
    response = _client(people["ada"]).get(f"/api/v1/organisations/{lab.pk}/audit/")

    # then: newest first
    assert response.status_code == 200, response.json()
    entries = response.json()["results"]
    assert [e["kind"] for e in entries] == ["job.finished", "job.submitted"]
    finished_entry, submitted = entries
    assert submitted["actor"] == "bob"
    assert submitted["job_id"] == pool_job.pk
    files = [(f.path, bytes(f.content)) for f in pool_job.files.all()]
    assert submitted["detail"] == {
        "name": pool_job.name,
        "entrypoint": pool_job.entrypoint,
        "files_sha256": files_sha256(files),
        "code_archive_sha256": None,
        "requirements_sha256": hashlib.sha256(b'["numpy==2.1.0"]').hexdigest(),
        "inputs": [],
        "group_id": None,
        "task_index": None,
    }
    assert requirements_sha256(["numpy==2.1.0"]) == submitted["detail"]["requirements_sha256"]
    assert finished_entry["detail"] == {
        "status": "succeeded",
        "reason": "exit code 0",
        "exit_code": 0,
        "cost_micros": pool_job.cost_micros,
    }
    assert finished_entry["host_id"] == pool_job.host_id


def test_a_public_job_leaves_no_trail(people, lab, make_host, ledger, committed, wire):
    # given
    make_host(people["hana"], "public")
    ledger.fund(people["bob"], 10_000_000)

    # when
    with committed():
        submit(people["bob"])

    # then
    assert PoolAuditEvent.objects.count() == 0


def test_files_digest_is_canonical():
    # the order files come in doesn't matter; the boundary between path and content does
    assert files_sha256([("a", b"1"), ("b", b"2")]) == files_sha256([("b", b"2"), ("a", b"1")])
    assert files_sha256([("a", b"bc")]) != files_sha256([("ab", b"c")])


@pytest.mark.parametrize(
    ("who", "status"), [("bob", 403), ("stu", 403), ("olga", 404), (None, 401)]
)
def test_only_admins_read_the_trail(people, lab, pool_job, who, status):
    # when
    response = _client(people[who] if who else None).get(
        f"/api/v1/organisations/{lab.pk}/audit/?format=csv"
    )

    # then
    assert response.status_code == status


def test_the_trail_filters_and_exports_csv(people, lab, pool_job):
    # given
    ada = _client(people["ada"])
    url = f"/api/v1/organisations/{lab.pk}/audit/"
    soon = (timezone.now() + timedelta(minutes=1)).isoformat()

    # when
    by_kind = ada.get(url, {"kind": "job.submitted"})
    by_job = ada.get(url, {"job": pool_job.pk + 1})
    future = ada.get(url, {"from": soon})
    bad = ada.get(url, {"kind": "job.eaten", "from": "yesterday"})
    exported = ada.get(url, {"format": "csv"})

    # then
    assert [e["kind"] for e in by_kind.json()["results"]] == ["job.submitted"]
    assert by_job.json()["count"] == 0
    assert future.json()["count"] == 0
    assert bad.status_code == 400
    assert sorted(bad.json()["error"]["fields"]) == ["from", "kind"]
    assert exported.status_code == 200
    assert exported["Content-Type"] == "text/csv; charset=utf-8"
    text = exported.getvalue().decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "at", "kind", "actor", "job_id", "host_id", "detail"]
    assert [row[2] for row in rows[1:]] == ["job.finished", "job.submitted"]
    assert json.loads(rows[2][6])["entrypoint"] == pool_job.entrypoint
    assert rows[2][3] == "bob"


def test_the_database_refuses_to_change_or_delete_the_trail(people, lab, pool_job):
    # given
    event = PoolAuditEvent.objects.order_by("pk").first()
    assert event is not None

    # when / then
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        PoolAuditEvent.objects.filter(pk=event.pk).update(detail={})
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        PoolAuditEvent.objects.filter(pk=event.pk).delete()
    assert PoolAuditEvent.objects.get(pk=event.pk).detail == event.detail
    assert PoolAuditEvent.objects.count() == 2
