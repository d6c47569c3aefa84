"""Every money input takes a JSON integer and nothing else (config.api.MicrosField).

A float, a numeric string, a boolean and an integer past the 64-bit columns are each a 400
naming the field, and nothing moves: no wallet, earnings, payment, payout, job or rate changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from hosts.models import Host, HostStatus
from jobs.models import Job
from ledger.models import Account, AccountKind
from ledger.payments.models import Payment, Payout
from tests.hosts.factories import host_create
from tests.jobs.real_ledger import RealLedger

pytestmark = pytest.mark.django_db

HOSTILE = [1500000.0, "1000000", True, False, 2**63, 10**30, -1, None, [1], {"n": 1}]


def _balances() -> list[tuple[str, int | None, int]]:
    return sorted(
        (account.kind, account.user_id, account.balance_micros) for account in Account.objects.all()
    )


def _refused(response: Any, field: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {field}
    assert error["message"].startswith(f"{field}: ")


@pytest.mark.parametrize("value", HOSTILE)
def test_a_purchase_amount_must_be_a_json_integer(
    alice: User, client_for: Callable[[User], APIClient], value: Any
) -> None:
    # given
    api = client_for(alice)
    before = _balances()

    # when
    response = api.post("/api/v1/payments/", {"amount_micros": value}, format="json")

    # then
    _refused(response, "amount_micros")
    assert Payment.objects.count() == 0
    assert _balances() == before


@pytest.mark.parametrize("raw", ["1e400", "1e3", "1000000.000", "-0.0"])
def test_a_purchase_amount_in_exponent_or_fraction_form_is_refused(
    alice: User, client_for: Callable[[User], APIClient], raw: str
) -> None:
    response = client_for(alice).post(
        "/api/v1/payments/", f'{{"amount_micros": {raw}}}', content_type="application/json"
    )

    _refused(response, "amount_micros")
    assert Payment.objects.count() == 0


@pytest.mark.parametrize("value", HOSTILE)
def test_a_payout_amount_must_be_a_json_integer(
    hana: User, client_for: Callable[[User], APIClient], value: Any
) -> None:
    api = client_for(hana)
    before = _balances()

    response = api.post("/api/v1/payouts/", {"amount_micros": value}, format="json")

    _refused(response, "amount_micros")
    assert Payout.objects.count() == 0
    assert _balances() == before


@pytest.mark.parametrize("value", HOSTILE)
def test_a_jobs_cost_cap_must_be_a_json_integer(
    alice: User, hana: User, client_for: Callable[[User], APIClient], value: Any
) -> None:
    # given
    RealLedger().fund(alice, 5_000_000)
    host_create(hana, status=HostStatus.ONLINE, last_seen_at=timezone.now(), docker_available=True)
    before = _balances()
    body = {"code": "print(1)", "placement": "auto", "max_cost_micros": value}

    # when
    response = client_for(alice).post("/api/v1/jobs/", body, format="json")

    # then
    _refused(response, "max_cost_micros")
    assert Job.objects.count() == 0
    assert _balances() == before


@pytest.mark.parametrize("value", HOSTILE)
def test_a_quotes_cost_cap_must_be_a_json_integer(
    alice: User, client_for: Callable[[User], APIClient], value: Any
) -> None:
    response = client_for(alice).post("/api/v1/quotes/", {"max_cost_micros": value}, format="json")

    if value is None:  # the cap is optional here: null means "no cap given"
        assert response.status_code == 200
    else:
        _refused(response, "max_cost_micros")


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hosts_rates_must_be_json_integers(
    hana: User, client_for: Callable[[User], APIClient], value: Any
) -> None:
    # given
    host = host_create(hana)
    before = Host.objects.values("cpu_core_hour_micros", "memory_gb_hour_micros").get()

    # when
    response = client_for(hana).patch(
        f"/api/v1/my/hosts/{host.pk}/", {"cpu_core_hour_micros": value}, format="json"
    )

    # then
    _refused(response, "cpu_core_hour_micros")
    after = Host.objects.values("cpu_core_hour_micros", "memory_gb_hour_micros").get()
    assert after == before


@pytest.mark.parametrize("value", ["1.5", "1e3", "true", "99999999999999999999", " 10", "-1"])
def test_a_query_string_price_is_digits_only(
    alice: User, client_for: Callable[[User], APIClient], value: str
) -> None:
    response = client_for(alice).get("/api/v1/hosts/", {"max_price_micros": value})

    _refused(response, "max_price_micros")


def test_a_query_string_and_a_form_may_send_the_digits_as_text(
    alice: User, hana: User, client_for: Callable[[User], APIClient]
) -> None:
    # given
    RealLedger().fund(alice, 5_000_000)
    host_create(hana, status=HostStatus.ONLINE, last_seen_at=timezone.now(), docker_available=True)
    api = client_for(alice)

    # when
    catalog = api.get("/api/v1/hosts/", {"max_price_micros": "10"})
    form = api.post(
        "/api/v1/jobs/",
        {"code": "print(1)", "placement": "auto", "max_cost_micros": "1000000"},
        format="multipart",
    )

    # then
    assert (catalog.status_code, form.status_code) == (200, 201)
    assert Job.objects.get().max_cost_micros == 1_000_000


def test_a_json_integer_amount_is_accepted(
    alice: User, client_for: Callable[[User], APIClient]
) -> None:
    response = client_for(alice).post(
        "/api/v1/payments/", {"amount_micros": 2_000_000}, format="json"
    )

    assert response.status_code == 201
    wallet = Account.objects.get(kind=AccountKind.WALLET, user=alice)
    assert wallet.balance_micros == 2_000_000
