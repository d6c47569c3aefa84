import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from accounts.tokens import PREFIX_LENGTH, secret_matches
from config.errors import ServiceError
from hosts import services
from hosts.models import EnrollmentToken, Host, HostCredential, HostStatus
from tests.hosts.factories import specs

pytestmark = pytest.mark.django_db


def _counts():
    return (Host.objects.count(), HostCredential.objects.count())


@override_settings(PUBLIC_URL="https://cp.example.org", ENROLLMENT_TOKEN_TTL_SECONDS=600)
def test_owner_creates_an_enrollment_token_with_the_command_to_run(hana, client_for):
    # given
    before = timezone.now()

    # when
    response = client_for(hana).post("/api/v1/hosts/enrollments/", {"name": "lab-1"}, format="json")

    # then
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"token", "expires_at", "command"}
    assert body["token"].startswith("cpe_")
    assert body["command"] == (
        f"communipute-agent enroll --server https://cp.example.org --token {body['token']}"
    )
    token = EnrollmentToken.objects.get()
    assert token.owner == hana
    assert token.name == "lab-1"
    assert token.prefix == body["token"][:PREFIX_LENGTH]
    assert secret_matches(body["token"], token.digest)
    assert body["token"] not in token.digest
    assert token.used_at is None
    assert before + timedelta(seconds=600) <= token.expires_at
    assert token.expires_at <= timezone.now() + timedelta(seconds=600)


def test_enrollment_needs_a_signed_in_user(api):
    response = api.post("/api/v1/hosts/enrollments/", {}, format="json")

    assert response.status_code in (401, 403)
    assert EnrollmentToken.objects.count() == 0


def test_agent_registers_with_the_token_and_gets_a_credential(hana, client_for, api):
    # given
    token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json").json()["token"]

    # when
    response = api.post(
        "/api/v1/agent/register/",
        {"enrollment_token": token, "specs": specs(arch="amd64", os="Linux"), "name": "ws-7"},
        format="json",
    )

    # then
    assert response.status_code == 201
    body = response.json()
    host = Host.objects.get()
    assert body == {"host_id": host.pk, "credential": body["credential"]}
    assert body["credential"].startswith("cph_")
    assert host.owner == hana
    assert host.name == "ws-7"
    assert (host.arch, host.os, host.cpus, host.memory_mb) == ("x86_64", "linux", 16, 65536)
    assert host.status == HostStatus.OFFLINE
    credential = HostCredential.objects.get()
    assert credential.host == host
    assert secret_matches(body["credential"], credential.digest)
    token_row = EnrollmentToken.objects.get()
    assert token_row.used_at is not None
    assert token_row.host == host
    assert services.host_authenticate(body["credential"]) == host


def test_the_name_given_at_enrollment_wins_over_the_agents(hana):
    issued = services.enrollment_create(owner=hana, name="gpu-box")

    registered = services.host_register(
        enrollment_token=issued.token, specs=specs(), name="hostname"
    )

    assert registered.host.name == "gpu-box"


@pytest.mark.parametrize("token", ["", "cpe_nonsense", "x" * 200])
def test_a_bad_enrollment_token_is_refused_and_creates_nothing(hana, api, token):
    # given
    services.enrollment_create(owner=hana)

    # when
    response = api.post(
        "/api/v1/agent/register/", {"enrollment_token": token, "specs": specs()}, format="json"
    )

    # then
    assert response.status_code in (400, 403)
    if token:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "enrollment_token_invalid"
    assert _counts() == (0, 0)
    assert EnrollmentToken.objects.get().used_at is None


def test_a_token_with_the_right_prefix_but_wrong_secret_is_refused(hana, api):
    issued = services.enrollment_create(owner=hana)
    forged = issued.token[:PREFIX_LENGTH] + "A" * (len(issued.token) - PREFIX_LENGTH)

    response = api.post(
        "/api/v1/agent/register/", {"enrollment_token": forged, "specs": specs()}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "enrollment_token_invalid"
    assert _counts() == (0, 0)
    assert EnrollmentToken.objects.get().used_at is None


def test_an_expired_enrollment_token_is_refused_and_creates_nothing(hana, api):
    # given
    issued = services.enrollment_create(owner=hana, now=timezone.now() - timedelta(days=1))

    # when
    response = api.post(
        "/api/v1/agent/register/",
        {"enrollment_token": issued.token, "specs": specs()},
        format="json",
    )

    # then
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "enrollment_token_expired",
        "message": "this enrollment token has expired",
        "fields": {},
    }
    assert _counts() == (0, 0)
    assert EnrollmentToken.objects.get().used_at is None


def test_a_used_enrollment_token_is_refused_the_second_time(hana, api):
    # given
    issued = services.enrollment_create(owner=hana)
    body = {"enrollment_token": issued.token, "specs": specs()}
    assert api.post("/api/v1/agent/register/", body, format="json").status_code == 201
    used_at = EnrollmentToken.objects.get().used_at

    # when
    response = api.post("/api/v1/agent/register/", body, format="json")

    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "enrollment_token_used"
    assert _counts() == (1, 1)
    assert EnrollmentToken.objects.get().used_at == used_at


@pytest.mark.parametrize(
    ("bad_specs", "field"),
    [
        (specs(cpus=0), "cpus"),
        (specs(cpus=1_000_000), "cpus"),
        (specs(os="plan9"), "os"),
        (specs(gpus=[{"model": "H100", "memory_mb": -1}]), "gpus"),
        (specs(cpu_model="x" * 201), "cpu_model"),  # the limits are the columns' widths
        (specs(arch="a" * 33), "arch"),
        (specs(os_version="1" * 101), "os_version"),
    ],
)
def test_impossible_specs_are_refused_and_the_token_stays_usable(hana, api, bad_specs, field):
    issued = services.enrollment_create(owner=hana)

    response = api.post(
        "/api/v1/agent/register/",
        {"enrollment_token": issued.token, "specs": bad_specs},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_specs"
    assert list(response.json()["error"]["fields"]) == [field]
    assert _counts() == (0, 0)
    assert EnrollmentToken.objects.get().used_at is None


def test_specs_of_the_wrong_shape_are_refused(hana, api):
    issued = services.enrollment_create(owner=hana)
    broken = specs()
    del broken["memory_mb"]

    response = api.post(
        "/api/v1/agent/register/",
        {"enrollment_token": issued.token, "specs": broken},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_specs"
    assert response.json()["error"]["message"] == "specs.memory_mb is required"
    assert _counts() == (0, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_with_one_token_create_exactly_one_host(hana):
    # given
    issued = services.enrollment_create(owner=hana)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def register() -> None:
        barrier.wait()
        try:
            services.host_register(enrollment_token=issued.token, specs=specs())
            outcomes.append("host")
        except ServiceError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert sorted(outcomes) == ["enrollment_token_used"] * 3 + ["host"]
    assert _counts() == (1, 1)
