from unittest import mock

import pytest
from django.forms.models import model_to_dict

from accounts.models import Membership, Organisation
from agent.protocol import CLOSE_UNAUTHORIZED
from hosts import services
from hosts.models import Host, HostCredential, HostStatus, HostVisibility
from tests.hosts.factories import credential_create, host_create, online

pytestmark = pytest.mark.django_db


def _row(host: Host) -> dict[str, object]:
    return model_to_dict(Host.objects.get(pk=host.pk))


@pytest.fixture
def sent():
    """Messages the services push to agents (the channel layer call, captured)."""
    with mock.patch("hosts.services.host_send") as host_send:
        yield host_send


def test_owner_lists_only_their_hosts_with_owner_fields(hana, mallory, client_for):
    # given
    mine = host_create(hana, name="mine", **online())
    credential_create(mine)
    host_create(mallory, name="theirs")

    # when
    response = client_for(hana).get("/api/v1/my/hosts/")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    listing = body["results"][0]
    assert listing["id"] == mine.pk
    assert listing["name"] == "mine"
    assert listing["status"] == "online"
    assert listing["has_live_credential"] is True
    assert listing["price_micros"] == 22_000
    assert listing["availability_policy"] == {
        "timezone": "UTC",
        "windows": [],
        "idle_minutes": None,
        "max_load": None,
    }


def test_owner_host_list_takes_a_fixed_number_of_queries(
    hana, client_for, django_assert_num_queries
):
    for index in range(5):
        credential_create(host_create(hana, name=f"h{index}"))
    client = client_for(hana)

    with django_assert_num_queries(2):  # count + page (credential check is a subquery)
        response = client.get("/api/v1/my/hosts/")

    assert response.json()["count"] == 5


def test_someone_elses_host_is_not_found(hana, mallory, client_for):
    # given
    host = host_create(hana)
    before = _row(host)

    # when
    get = client_for(mallory).get(f"/api/v1/my/hosts/{host.pk}/")
    patch = client_for(mallory).patch(
        f"/api/v1/my/hosts/{host.pk}/", {"cpu_core_hour_micros": 1}, format="json"
    )
    revoke = client_for(mallory).post(f"/api/v1/my/hosts/{host.pk}/credentials/revoke/")

    # then
    assert (get.status_code, patch.status_code, revoke.status_code) == (404, 404, 404)
    assert patch.json()["error"]["code"] == "not_found"
    assert _row(host) == before


def test_owner_sets_rates_limits_and_policy(hana, client_for, sent):
    # given
    host = host_create(hana)
    policy = {
        "timezone": "Europe/Berlin",
        "windows": [{"days": [5, 6, 5], "start": "22:00", "end": "06:00"}],
        "idle_minutes": 10,
        "max_load": 25,
    }

    # when
    response = client_for(hana).patch(
        f"/api/v1/my/hosts/{host.pk}/",
        {
            "name": " lab box ",
            "cpu_core_hour_micros": 30_000,
            "memory_gb_hour_micros": 1_000,
            "gpu_hour_micros": 0,
            "max_job_cpus": 8,
            "max_job_memory_mb": 32768,
            "max_job_timeout_seconds": 7200,
            "allow_network": True,
            "availability_policy": policy,
        },
        format="json",
    )

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "lab box"
    assert body["price_micros"] == 31_000
    assert body["max_job_cpus"] == 8
    assert body["availability_policy"] == {
        "timezone": "Europe/Berlin",
        "windows": [{"days": [5, 6], "start": "22:00", "end": "06:00"}],
        "idle_minutes": 10,
        "max_load": 25.0,
    }
    host.refresh_from_db()
    assert (host.cpu_core_hour_micros, host.memory_gb_hour_micros) == (30_000, 1_000)
    assert host.allow_network is True
    sent.assert_called_once_with(host.pk, "policy", body["availability_policy"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cpu_core_hour_micros": -1}, "cpu_core_hour_micros"),
        ({"gpu_hour_micros": 10**11}, "gpu_hour_micros"),
        ({"max_job_cpus": 17}, "max_job_cpus"),
        ({"max_job_gpus": 1}, "max_job_gpus"),
        ({"max_job_timeout_seconds": 5}, "max_job_timeout_seconds"),
        ({"name": "   "}, "name"),
        ({"visibility": "secret"}, "visibility"),
        ({"visibility": "private"}, "organisation"),
        ({"availability_policy": {"timezone": "Mars/Olympus"}}, "availability_policy"),
        (
            {"availability_policy": {"windows": [{"days": [7], "start": "09:00", "end": "17:00"}]}},
            "availability_policy",
        ),
        ({"availability_policy": {"max_load": 150}}, "availability_policy"),
        ({"availability_policy": {"sleepy": True}}, "availability_policy"),
        ({"owner": 1}, "owner"),
    ],
)
def test_invalid_owner_changes_are_refused_and_nothing_changes(
    hana, client_for, sent, change, field
):
    # given
    host = host_create(hana)
    before = _row(host)

    # when
    response = client_for(hana).patch(
        f"/api/v1/my/hosts/{host.pk}/", {"cpu_core_hour_micros": 5, **change}, format="json"
    )

    # then
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert _row(host) == before
    sent.assert_not_called()


def test_the_owners_settings_never_move_a_host_into_a_pool(hana, mallory, client_for):
    # given: a pool takes hosts only with its admins' pool token (docs/pools.md)
    host = host_create(hana)
    theirs = Organisation.objects.create(name="mallory inc")
    Membership.objects.create(organisation=theirs, user=mallory)
    Membership.objects.create(organisation=theirs, user=hana)
    before = _row(host)

    # when
    response = client_for(hana).patch(
        f"/api/v1/my/hosts/{host.pk}/",
        {"visibility": "private", "organisation": theirs.pk},
        format="json",
    )

    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "organisation": [
            "a host joins an organisation's pool with a pool token from its admins: "
            "POST /api/v1/my/hosts/{id}/pool/"
        ]
    }
    assert _row(host) == before


def test_owner_makes_a_host_of_a_visible_pool_private_to_it_and_public_again(hana, client_for):
    # given: the host is in a pool that doesn't hide its hosts
    lab = Organisation.objects.create(name="lab", pool_hidden=False)
    host = host_create(hana, organisation=lab)
    client = client_for(hana)

    # when
    private = client.patch(
        f"/api/v1/my/hosts/{host.pk}/",
        {"visibility": "private", "organisation": lab.pk},
        format="json",
    )
    public = client.patch(f"/api/v1/my/hosts/{host.pk}/", {"visibility": "public"}, format="json")

    # then: it stays in the pool either way
    assert (private.json()["visibility"], private.json()["organisation"]) == ("private", lab.pk)
    assert (public.json()["visibility"], public.json()["organisation"]) == ("public", lab.pk)
    host.refresh_from_db()
    assert (host.visibility, host.organisation_id) == (HostVisibility.PUBLIC, lab.pk)


def test_draining_tells_the_agent_and_stops_new_work(hana, client_for, sent):
    # given
    host = host_create(hana, **online())

    # when
    drained = client_for(hana).patch(
        f"/api/v1/my/hosts/{host.pk}/", {"is_draining": True}, format="json"
    )

    # then
    assert drained.status_code == 200
    assert drained.json()["status"] == "draining"
    assert drained.json()["is_draining"] is True
    assert drained.json()["is_accepting_jobs"] is False
    sent.assert_called_once_with(host.pk, "drain", {"is_draining": True})

    # when
    sent.reset_mock()
    resumed = services.host_drain(owner=hana, host_id=host.pk, is_draining=False)

    # then
    assert (resumed.status, resumed.is_draining) == (HostStatus.ONLINE, False)
    sent.assert_called_once_with(host.pk, "drain", {"is_draining": False})


def test_draining_an_offline_host_keeps_it_offline(hana):
    host = host_create(hana)

    drained = services.host_drain(owner=hana, host_id=host.pk)

    assert (drained.status, drained.is_draining) == (HostStatus.OFFLINE, True)


def test_owner_revokes_the_credential_and_the_agent_is_disconnected(hana, client_for):
    # given
    host = host_create(hana, **online())
    credential = credential_create(host)

    # when
    with mock.patch("hosts.services.host_close") as host_close:
        response = client_for(hana).post(f"/api/v1/my/hosts/{host.pk}/credentials/revoke/")

    # then
    assert response.status_code == 200
    assert response.json() == {"revoked": 1}
    host_close.assert_called_once_with(host.pk, CLOSE_UNAUTHORIZED)
    assert HostCredential.objects.get().revoked_at is not None
    host.refresh_from_db()
    assert host.status == HostStatus.OFFLINE
    with pytest.raises(services.HostAuthenticationFailed):
        services.host_authenticate(credential)


def test_a_deactivated_owners_hosts_neither_connect_nor_show(hana, alice, client_for):
    # given
    host = host_create(hana, **online())
    credential = credential_create(host)

    # when: staff deactivate the owner
    hana.is_active = False
    hana.save(update_fields=["is_active"])

    # then
    with pytest.raises(services.HostAuthenticationFailed):
        services.host_authenticate(credential)
    assert client_for(alice).get("/api/v1/hosts/").json()["results"] == []
    assert client_for(alice).get(f"/api/v1/hosts/{host.pk}/").status_code == 404


def test_revoking_again_revokes_nothing(hana, client_for):
    host = host_create(hana)
    credential_create(host)
    client = client_for(hana)
    client.post(f"/api/v1/my/hosts/{host.pk}/credentials/revoke/")
    revoked_at = HostCredential.objects.get().revoked_at

    response = client.post(f"/api/v1/my/hosts/{host.pk}/credentials/revoke/")

    assert response.json() == {"revoked": 0}
    assert HostCredential.objects.get().revoked_at == revoked_at
