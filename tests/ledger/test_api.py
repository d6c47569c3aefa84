"""GET /api/v1/wallet/, /api/v1/wallet/transactions/ and the staff reconciliation report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from ledger.models import LedgerTransaction
from ledger.services import hold_capture, hold_place, hold_release, ledger_reconcile, wallet_credit

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User], APIClient]


@pytest.fixture
def alice_spent(alice: User, hana: User) -> dict[str, LedgerTransaction]:
    """Alice bought 5 credits, held 2 for job 9, was charged 0.5 and placed a hold on job 10."""
    txns = {
        "buy": wallet_credit(user=alice, amount_micros=5_000_000, key="buy", reason="card payment"),
        "hold9": hold_place(user=alice, job_id=9, amount_micros=2_000_000, key="hold:9"),
        "charge": hold_capture(
            job_id=9,
            attempt=1,
            host_owner=hana,
            gross_micros=500_000,
            fee_micros=50_000,
            key="usage:9:1:1",
        ),
    }
    txns["release"] = hold_release(job_id=9, key="release:9")  # type: ignore[assignment]
    txns["hold10"] = hold_place(user=alice, job_id=10, amount_micros=1_000_000, key="hold:10")
    return txns


def test_wallet_shows_available_and_held_credits(
    alice_spent: dict[str, LedgerTransaction], alice: User, client_for: ClientFor
) -> None:
    # when
    response = client_for(alice).get("/api/v1/wallet/")
    # then: job 10's hold counts as held, never as available
    assert response.status_code == 200
    assert response.json() == {
        "balance_micros": 4_500_000,
        "held_micros": 1_000_000,
        "available_micros": 3_500_000,
    }


def test_wallet_of_a_new_user_is_zero(mallory: User, client_for: ClientFor) -> None:
    response = client_for(mallory).get("/api/v1/wallet/")
    assert response.json() == {"balance_micros": 0, "held_micros": 0, "available_micros": 0}


@pytest.mark.parametrize("path", ["/api/v1/wallet/", "/api/v1/wallet/transactions/"])
def test_wallet_needs_authentication(api: APIClient, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_wallet_transactions_lists_the_users_lines_newest_first(
    alice_spent: dict[str, LedgerTransaction], alice: User, client_for: ClientFor
) -> None:
    # when
    response = client_for(alice).get("/api/v1/wallet/transactions/")
    # then
    assert response.status_code == 200
    body = response.json()
    lines = [
        (line["kind"], line["account"], line["amount_micros"], line["job_id"])
        for line in body["results"]
    ]
    assert lines == [
        ("hold", "escrow", 1_000_000, 10),
        ("hold", "wallet", -1_000_000, 10),
        ("release", "wallet", 1_500_000, 9),
        ("release", "escrow", -1_500_000, 9),
        ("capture", "escrow", -500_000, 9),
        ("hold", "escrow", 2_000_000, 9),
        ("hold", "wallet", -2_000_000, 9),
        ("purchase", "wallet", 5_000_000, None),
    ]
    assert body["count"] == 8
    first = body["results"][0]
    assert set(first) == {
        "id",
        "created_at",
        "kind",
        "account",
        "amount_micros",
        "job_id",
        "memo",
        "transaction_id",
    }
    assert (first["memo"], first["transaction_id"]) == ("hold for job 10", alice_spent["hold10"].pk)


def test_wallet_transactions_never_show_another_users_lines(
    alice_spent: dict[str, LedgerTransaction],
    mallory: User,
    hana: User,
    client_for: ClientFor,
) -> None:
    # given: mallory has a line of her own; hana earned from alice's job
    wallet_credit(user=mallory, amount_micros=1_000, key="buy-m", reason="card payment")
    # when
    mallorys = client_for(mallory).get("/api/v1/wallet/transactions/").json()
    hanas = client_for(hana).get("/api/v1/wallet/transactions/").json()
    # then
    assert [(line["kind"], line["amount_micros"]) for line in mallorys["results"]] == [
        ("purchase", 1_000)
    ]
    assert hanas == {"count": 0, "next": None, "previous": None, "results": []}


def test_wallet_transactions_are_paginated(
    alice_spent: dict[str, LedgerTransaction], alice: User, client_for: ClientFor
) -> None:
    # when
    page = client_for(alice).get("/api/v1/wallet/transactions/?page_size=3&page=2").json()
    # then
    assert page["count"] == 8
    assert [line["kind"] for line in page["results"]] == ["release", "capture", "hold"]
    assert page["next"].endswith("page=3&page_size=3")


def test_wallet_transactions_take_a_fixed_number_of_queries(
    alice_spent: dict[str, LedgerTransaction],
    alice: User,
    client_for: ClientFor,
    django_assert_max_num_queries: Any,
) -> None:
    client = client_for(alice)
    with django_assert_max_num_queries(2):
        client.get("/api/v1/wallet/transactions/")


def test_reconciliation_report_is_staff_only(alice: User, client_for: ClientFor) -> None:
    response = client_for(alice).get("/api/v1/admin/reports/reconciliation/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_reconciliation_report_before_any_run(staff: User, client_for: ClientFor) -> None:
    # when
    body = client_for(staff).get("/api/v1/admin/reports/reconciliation/").json()
    # then
    assert body["last_run"] is None
    assert [item["name"] for item in body["invariants"]] == [
        "transaction_balanced",
        "balance_matches_postings",
        "no_forbidden_negative",
        "payouts_within_matured",
        "platform_loss_paths",
        "finished_job_escrow_empty",
        "charges_within_cap",
        "job_cost_matches_charges",
    ]


def test_reconciliation_report_shows_the_last_run(
    alice_spent: dict[str, LedgerTransaction], staff: User, client_for: ClientFor
) -> None:
    # given
    ledger_reconcile()
    report = ledger_reconcile()
    # when
    body = client_for(staff).get("/api/v1/admin/reports/reconciliation/").json()
    # then
    run = body["last_run"]
    assert run["id"] == report.run_id
    assert (run["is_clean"], run["problem_count"], run["problems"]) == (True, 0, [])
    assert run["checks"] == [
        "transaction_balanced",
        "balance_matches_postings",
        "no_forbidden_negative",
        "payouts_within_matured",
        "platform_loss_paths",
    ]
    assert (run["accounts_checked"], run["transactions_checked"]) == (6, 5)


def test_the_schema_describes_the_wallet_endpoints(api: APIClient) -> None:
    # when
    schema = api.get("/api/schema/?format=json").json()
    # then
    wallet = schema["paths"]["/api/v1/wallet/"]["get"]
    ref = wallet["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/WalletOutput"
    assert set(schema["components"]["schemas"]["WalletOutput"]["properties"]) == {
        "balance_micros",
        "held_micros",
        "available_micros",
    }
    lines = schema["paths"]["/api/v1/wallet/transactions/"]["get"]
    assert {p["name"] for p in lines["parameters"]} == {"page", "page_size", "job", "transaction"}
    paginated = lines["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert paginated == "#/components/schemas/PaginatedWalletLineOutputList"
    report = schema["paths"]["/api/v1/admin/reports/reconciliation/"]["get"]
    assert report["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] == (
        "#/components/schemas/ReconciliationReportOutput"
    )
