import pytest

from hosts import services
from tests.hosts.factories import credential_create, host_create, specs


@pytest.mark.parametrize("model", ["host", "hostcredential", "enrollmenttoken"])
def test_changelists_load(admin_client, hana, model):
    # given
    issued = services.enrollment_create(owner=hana)
    services.host_register(enrollment_token=issued.token, specs=specs())
    credential_create(host_create(hana))

    # when
    response = admin_client.get(f"/admin/hosts/{model}/")

    # then
    assert response.status_code == 200


def test_a_host_page_loads_and_shows_no_credential_plaintext(admin_client, hana):
    host = host_create(hana)
    plaintext = credential_create(host)

    page = admin_client.get(f"/admin/hosts/host/{host.pk}/change/")
    credential_page = admin_client.get(
        f"/admin/hosts/hostcredential/{host.credentials.get().pk}/change/"
    )

    assert page.status_code == 200
    assert credential_page.status_code == 200
    assert plaintext not in credential_page.content.decode()
