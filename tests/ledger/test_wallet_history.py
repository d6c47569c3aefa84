"""GET /api/v1/wallet/history/: the ledger grouped into one line per job, purchase, grant."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import User
from ledger.models import Posting
from ledger.providers import providers
from ledger.services import (
    charges_reverse,
    hold_capture,
    hold_place,
    hold_release,
    wallet_credit,
)

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User], APIClient]
HISTORY = "/api/v1/wallet/history/"
NAMES = {9: "train.py", 10: "sweep"}


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        providers, "job_names", lambda ids: {i: NAMES[i] for i in ids if i in NAMES}
    )


@pytest.fixture
def history(alice: User, hana: User) -> None:
    """Alice bought 5 credits; job 9 held 2, was charged 0.5 in five charges of 0.1, 0.1 of
    them was reversed, and the rest released; job 10 holds 1 and was charged 0.2 so far."""
    wallet_credit(user=alice, amount_micros=5_000_000, key="buy", reason="card payment")
    hold_place(user=alice, job_id=9, amount_micros=2_000_000, key="hold:9")
    for n in range(1, 6):
        hold_capture(
            job_id=9,
            attempt=1,
            host_owner=hana,
            gross_micros=100_000,
            fee_micros=10_000,
            key=f"usage:9:1:{n}",
        )
    charges_reverse(job_id=9, attempt=1, key="reverse:9:1")
    hold_capture(
        job_id=9,
        attempt=2,
        host_owner=hana,
        gross_micros=400_000,
        fee_micros=40_000,
        key="usage:9:2:1",
    )
    hold_release(job_id=9, key="release:9")
    hold_place(user=alice, job_id=10, amount_micros=1_000_000, key="hold:10")
    hold_capture(
        job_id=10,
        attempt=1,
        host_owner=hana,
        gross_micros=200_000,
        fee_micros=20_000,
        key="usage:10:1:1",
    )


def _figures(line: dict[str, object]) -> tuple[object, ...]:
    keys = (
        "line",
        "job_id",
        "job_name",
        "amount_micros",
        "hold_micros",
        "charged_micros",
        "reversed_micros",
        "refund_micros",
        "held_micros",
        "cost_micros",
    )
    return tuple(line[k] for k in keys)


def test_one_line_per_job_and_one_per_purchase_newest_first(
    alice: User, history: None, names: None, client_for: ClientFor
) -> None:
    # when
    response = client_for(alice).get(HISTORY)

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [_figures(line) for line in body["results"]] == [
        ("job", 10, "sweep", -1_000_000, 1_000_000, 200_000, 0, 0, 800_000, 200_000),
        ("job", 9, "train.py", -400_000, 2_000_000, 900_000, 500_000, 1_600_000, 0, 400_000),
        ("purchase", None, None, 5_000_000, 0, 0, 0, 0, 0, 0),
    ]
    assert (
        body["results"][1]["entry_count"]
        == Posting.objects.filter(account__user=alice, transaction__job_id=9).count()
    )
    assert body["results"][2]["memo"] == "card payment"


def test_a_host_owner_sees_an_earnings_line_per_job(
    hana: User, history: None, names: None, client_for: ClientFor
) -> None:
    # when
    body = client_for(hana).get(HISTORY).json()

    # then: job 9 earned 0.45 + 0.36 less the reversed 0.45 (net of fees); job 10 0.18
    assert [(line["line"], line["job_id"], line["amount_micros"]) for line in body["results"]] == [
        ("earnings", 10, 180_000),
        ("earnings", 9, 360_000),
    ]


def test_the_entries_behind_a_line_are_a_filter_away(
    alice: User, mallory: User, history: None, client_for: ClientFor
) -> None:
    # when
    mine = client_for(alice).get("/api/v1/wallet/transactions/?job=9").json()
    theirs = client_for(mallory).get("/api/v1/wallet/transactions/?job=9").json()
    bad = client_for(alice).get("/api/v1/wallet/transactions/?job=nine")

    # then: the hold and the release (wallet and escrow each), five charges, one reversal and
    # a second attempt's charge (the escrow's side)
    assert mine["count"] == 11
    assert {line["job_id"] for line in mine["results"]} == {9}
    assert theirs["count"] == 0
    assert (bad.status_code, list(bad.json()["error"]["fields"])) == (400, ["job"])


def test_nobody_sees_anyone_elses_lines(
    mallory: User, history: None, client_for: ClientFor
) -> None:
    # when
    body = client_for(mallory).get(HISTORY).json()

    # then
    assert (body["count"], body["results"]) == (0, [])


def test_the_csv_has_the_same_lines(
    alice: User, history: None, names: None, client_for: ClientFor
) -> None:
    # when
    response = client_for(alice).get(HISTORY + "?format=csv")

    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["line"], r["job_id"], r["job_name"], r["cost_micros"]) for r in rows] == [
        ("job", "10", "sweep", "200000"),
        ("job", "9", "train.py", "400000"),
        ("purchase", "", "", "0"),
    ]


def test_a_page_of_history_costs_the_same_queries_however_many_charges(
    alice: User, hana: User, history: None, names: None, client_for: ClientFor
) -> None:
    # given
    client = client_for(alice)
    with CaptureQueriesContext(connection) as before:
        client.get(HISTORY)
    for n in range(2, 30):
        hold_capture(
            job_id=10,
            attempt=1,
            host_owner=hana,
            gross_micros=1_000,
            fee_micros=100,
            key=f"usage:10:1:{n}",
        )

    # when
    with CaptureQueriesContext(connection) as after:
        body = client.get(HISTORY).json()

    # then
    assert len(after) == len(before)
    assert body["count"] == 3
