"""The ledger admin: read-only tables; credits move only through credits_adjust."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.models import User
from ledger.models import Account, AccountKind, LedgerTransaction, TransactionKind
from ledger.services import wallet_credit
from tests.ledger.helpers import balance, ledger_state

pytestmark = pytest.mark.django_db

ADJUST_URL = "/admin/ledger/account/adjust/"


@pytest.fixture
def accountant(staff: User) -> Client:
    staff.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="ledger",
            codename__in=["adjust_credits", "view_account", "view_ledgertransaction"],
        )
    )
    client = Client()
    client.force_login(staff)
    return client


def test_staff_adjust_credits_through_the_admin_form(
    accountant: Client, alice: User, staff: User
) -> None:
    # given: the form hands out a fresh key
    form = accountant.get(f"{ADJUST_URL}?username=alice")
    key = form.context["form"].initial["key"]
    data = {"username": "alice", "amount_micros": "2500000", "reason": "outage", "key": key}
    # when: submitted twice (a double click)
    first = accountant.post(ADJUST_URL, data)
    second = accountant.post(ADJUST_URL, data)
    # then: one adjustment, with the reason and the staff user
    txn = LedgerTransaction.objects.get(kind=TransactionKind.ADJUSTMENT)
    assert (form.status_code, first.status_code, second.status_code) == (200, 302, 302)
    assert first["Location"] == f"/admin/ledger/ledgertransaction/{txn.pk}/change/"
    assert (txn.key, txn.memo, txn.created_by) == (key, "outage", staff)
    assert balance(AccountKind.WALLET, user=alice) == 2_500_000


def test_an_overdrawing_adjustment_is_refused_in_the_form(accountant: Client, alice: User) -> None:
    # given
    before = ledger_state()
    data = {"username": "alice", "amount_micros": "-1", "reason": "claw back", "key": "adm-1"}
    # when
    response = accountant.post(ADJUST_URL, data)
    # then
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "not enough credits: 0 micro-credits left, 1 needed"
    ]
    assert ledger_state() == before


def test_adjusting_needs_the_permission(staff: User, alice: User) -> None:
    # given: staff without the adjust_credits permission
    client = Client()
    client.force_login(staff)
    # when
    response = client.post(
        ADJUST_URL, {"username": "alice", "amount_micros": "5", "reason": "r", "key": "k"}
    )
    # then
    assert response.status_code == 403
    assert LedgerTransaction.objects.count() == 0


def test_ledger_tables_are_read_only_in_the_admin(accountant: Client, alice: User) -> None:
    # given
    txn = wallet_credit(user=alice, amount_micros=5, key="buy", reason="card payment")
    wallet = Account.objects.get(kind=AccountKind.WALLET)
    # when
    listing = accountant.get("/admin/ledger/account/")
    detail = accountant.get(f"/admin/ledger/ledgertransaction/{txn.pk}/change/")
    edit = accountant.post(f"/admin/ledger/account/{wallet.pk}/change/", {"balance_micros": 99})
    add = accountant.get("/admin/ledger/ledgertransaction/add/")
    delete = accountant.post(f"/admin/ledger/ledgertransaction/{txn.pk}/delete/", {"post": "yes"})
    # then
    assert (listing.status_code, detail.status_code) == (200, 200)
    assert b"Grant or adjust credits" in listing.content
    assert (edit.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    assert balance(AccountKind.WALLET, user=alice) == 5


@pytest.mark.parametrize(
    "amount",
    [str(2**63), str(-(2**63) - 1), "1" + "0" * 40, str(2**53 + 1), str(-(2**53) - 1), "0"],
    ids=["int64_plus_1", "int64_minus_1", "ten_to_40", "over_max", "under_minus_max", "zero"],
)
def test_an_out_of_range_adjustment_is_refused_in_the_form_and_moves_nothing(
    accountant: Client, alice: User, amount: str
) -> None:
    # given
    wallet_credit(user=alice, amount_micros=5_000_000, key="buy", reason="card payment")
    before = ledger_state()
    data = {"username": "alice", "amount_micros": amount, "reason": "typo", "key": "adm-big"}
    # when
    response = accountant.post(ADJUST_URL, data)
    # then: the form is shown again with the bound named, and nothing moved
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == ["amount_micros"], errors
    [message] = errors["amount_micros"]
    assert "9007199254740992" in message or "not be zero" in message, message
    assert ledger_state() == before
    assert LedgerTransaction.objects.filter(kind=TransactionKind.ADJUSTMENT).count() == 0


def test_the_largest_adjustment_is_accepted(accountant: Client, alice: User) -> None:
    data = {"username": "alice", "amount_micros": str(2**53), "reason": "max", "key": "adm-max"}
    response = accountant.post(ADJUST_URL, data)
    assert response.status_code == 302
    assert balance(AccountKind.WALLET, user=alice) == 2**53
