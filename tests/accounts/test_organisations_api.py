from __future__ import annotations

import pytest

from accounts.models import Membership, MembershipRole, Organisation, User
from accounts.selectors import organisations_of
from accounts.services import organisation_create, organisation_member_add

ORGS = "/api/v1/organisations/"


def _members(organisation: Organisation) -> list[tuple[str, str]]:
    return sorted(
        Membership.objects.filter(organisation=organisation).values_list("user__username", "role")
    )


@pytest.fixture
def lab(alice: User) -> Organisation:
    """alice's organisation; alice is its admin."""
    return organisation_create(user=alice, name="Physics Lab").organisation


@pytest.mark.django_db
def test_create_makes_me_the_admin(client_for, alice):
    # when
    response = client_for(alice).post(ORGS, {"name": "Physics Lab"}, format="json")

    # then
    assert response.status_code == 201
    organisation = Organisation.objects.get()
    assert response.json() == {
        "id": organisation.pk,
        "name": "Physics Lab",
        "created_at": response.json()["created_at"],
        "role": "admin",
    }
    assert _members(organisation) == [("alice", "admin")]


@pytest.mark.django_db
def test_create_refuses_a_taken_name(client_for, mallory, lab):
    # when
    response = client_for(mallory).post(ORGS, {"name": "physics lab"}, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "name": ["An organisation with that name already exists."]
    }
    assert Organisation.objects.count() == 1
    assert _members(lab) == [("alice", "admin")]


@pytest.mark.django_db
def test_list_and_detail_show_only_my_organisations(client_for, alice, mallory, lab):
    # given
    other = organisation_create(user=mallory, name="Mallory Inc").organisation

    # when
    listed = client_for(alice).get(ORGS).json()
    detail = client_for(alice).get(f"{ORGS}{other.pk}/")

    # then
    assert [(o["name"], o["role"]) for o in listed["results"]] == [("Physics Lab", "admin")]
    assert detail.status_code == 404
    assert client_for(alice).get(f"{ORGS}{lab.pk}/").json()["name"] == "Physics Lab"


@pytest.mark.django_db
def test_an_admin_adds_and_removes_members(client_for, alice, hana, lab):
    # given
    admin = client_for(alice)

    # when
    added = admin.post(f"{ORGS}{lab.pk}/members/", {"username": "hana"}, format="json")

    # then
    assert added.status_code == 201
    assert added.json() == {
        "username": "hana",
        "role": "member",
        "is_steward": False,
        "monthly_cap_micros": None,
        "created_at": added.json()["created_at"],
    }
    assert _members(lab) == [("alice", "admin"), ("hana", "member")]
    listed = client_for(hana).get(f"{ORGS}{lab.pk}/members/").json()["results"]
    assert [(m["username"], m["role"]) for m in listed] == [("alice", "admin"), ("hana", "member")]
    assert [o.name for o in organisations_of(hana)] == ["Physics Lab"]

    # when
    removed = admin.delete(f"{ORGS}{lab.pk}/members/hana/")

    # then
    assert removed.status_code == 204
    assert _members(lab) == [("alice", "admin")]
    assert list(organisations_of(hana)) == []


@pytest.mark.django_db
def test_a_plain_member_cannot_add_or_remove_others(client_for, alice, hana, mallory, lab):
    # given
    organisation_member_add(actor=alice, organisation=lab, username="hana")
    member = client_for(hana)

    # when
    add = member.post(f"{ORGS}{lab.pk}/members/", {"username": "mallory"}, format="json")
    remove = member.delete(f"{ORGS}{lab.pk}/members/alice/")

    # then
    assert add.status_code == 403
    assert add.json() == {
        "error": {
            "code": "permission_denied",
            "message": "Only an admin of this organisation can change its members.",
            "fields": {},
        }
    }
    assert remove.status_code == 403
    assert _members(lab) == [("alice", "admin"), ("hana", "member")]


@pytest.mark.django_db
def test_an_outsider_gets_404(client_for, mallory, lab):
    # when
    add = client_for(mallory).post(
        f"{ORGS}{lab.pk}/members/", {"username": "mallory"}, format="json"
    )
    members = client_for(mallory).get(f"{ORGS}{lab.pk}/members/")

    # then
    assert add.status_code == 404
    assert members.status_code == 404
    assert _members(lab) == [("alice", "admin")]


@pytest.mark.django_db
def test_adding_an_unknown_user_or_a_member_again_is_refused(client_for, alice, hana, lab):
    # given
    organisation_member_add(actor=alice, organisation=lab, username="hana")
    admin = client_for(alice)

    # when
    unknown = admin.post(f"{ORGS}{lab.pk}/members/", {"username": "nobody"}, format="json")
    again = admin.post(f"{ORGS}{lab.pk}/members/", {"username": "hana"}, format="json")

    # then
    assert unknown.status_code == 400
    assert unknown.json()["error"]["fields"] == {"username": ["No such user."]}
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_member"
    assert _members(lab) == [("alice", "admin"), ("hana", "member")]


@pytest.mark.django_db
def test_a_member_leaves_but_the_last_admin_cannot(client_for, alice, hana, lab):
    # given
    organisation_member_add(actor=alice, organisation=lab, username="hana")

    # when
    left = client_for(hana).delete(f"{ORGS}{lab.pk}/members/hana/")
    last_admin = client_for(alice).delete(f"{ORGS}{lab.pk}/members/alice/")

    # then
    assert left.status_code == 204
    assert last_admin.status_code == 409
    assert last_admin.json()["error"]["code"] == "last_admin"
    assert _members(lab) == [("alice", "admin")]


@pytest.mark.django_db
def test_an_admin_can_leave_when_another_admin_remains(client_for, alice, hana, lab):
    # given
    organisation_member_add(
        actor=alice, organisation=lab, username="hana", role=MembershipRole.ADMIN
    )

    # when
    response = client_for(alice).delete(f"{ORGS}{lab.pk}/members/alice/")

    # then
    assert response.status_code == 204
    assert _members(lab) == [("hana", "admin")]
