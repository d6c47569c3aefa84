"""demo_seed: the demo users with per-machine passwords kept under var/, credits granted once."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import User
from demo.services import DEMO_USERNAMES, RENTER_CREDITS_KEY, demo_seed
from ledger.models import LedgerTransaction
from ledger.selectors import wallet_balances
from tests.ledger.helpers import ledger_state

pytestmark = pytest.mark.django_db


def test_seed_creates_the_users_with_the_passwords_it_keeps(tmp_path: Path) -> None:
    # when
    seed = demo_seed(var_dir=tmp_path)

    # then
    stored = json.loads((tmp_path / "demo-users.json").read_text())
    assert stat.S_IMODE((tmp_path / "demo-users.json").stat().st_mode) == 0o600
    assert sorted(stored) == ["host", "renter", "staff"]
    for login in seed.logins:
        user = User.objects.get(username=login.username)
        assert stored[login.role] == {"username": login.username, "password": login.password}
        assert user.check_password(login.password)
        assert (user.is_staff, user.is_superuser) == ((login.role == "staff",) * 2)
    assert [login.username for login in seed.logins] == list(DEMO_USERNAMES.values())


def test_seed_grants_the_renter_100_credits_through_the_ledger(tmp_path: Path) -> None:
    # when
    seed = demo_seed(var_dir=tmp_path)

    # then
    renter = User.objects.get(username="demo-renter")
    assert wallet_balances(renter)["available_micros"] == 100_000_000
    grant = LedgerTransaction.objects.get(key=RENTER_CREDITS_KEY)
    assert (grant.kind, grant.created_by.username if grant.created_by else None) == (
        "grant",
        "demo-admin",
    )
    assert seed.credits_granted_micros == 100_000_000


def test_seed_again_changes_nothing(tmp_path: Path) -> None:
    # given
    first = demo_seed(var_dir=tmp_path)
    before = (ledger_state(), list(User.objects.values_list("username", "password")))

    # when
    second = demo_seed(var_dir=tmp_path)

    # then
    assert second.logins == first.logins
    assert second.credits_granted_micros == 0
    assert (ledger_state(), list(User.objects.values_list("username", "password"))) == before


def test_seed_puts_back_a_password_that_was_changed(tmp_path: Path) -> None:
    # given
    seed = demo_seed(var_dir=tmp_path)
    renter = User.objects.get(username="demo-renter")
    renter.set_password("something else 123")
    renter.save()

    # when
    demo_seed(var_dir=tmp_path)

    # then
    renter.refresh_from_db()
    assert renter.check_password(seed.logins[0].password)


def test_passwords_are_random_per_machine(tmp_path: Path) -> None:
    # when: two machines (two var directories)
    one = demo_seed(var_dir=tmp_path / "one")
    two = demo_seed(var_dir=tmp_path / "two")

    # then
    passwords = [login.password for login in one.logins + two.logins]
    assert len(set(passwords)) == 6
    assert all(len(password) >= 16 for password in passwords)


def test_the_command_prints_the_logins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # when
    call_command("demo_seed", "--var-dir", str(tmp_path))

    # then
    out = capsys.readouterr().out
    stored = json.loads((tmp_path / "demo-users.json").read_text())
    for role, login in stored.items():
        assert f"{role:<7} {login['username']:<12} {login['password']}" in out
    assert "granted the renter 100 credits" in out
