"""GET /api/v1/admin/reports/billing/ and ledger.reports: exact figures for a scripted month."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from config.transactions import durable_call
from hosts.models import Host
from ledger.models import LedgerTransaction
from ledger.payments.models import ConnectedAccount, OnboardingStatus, Payment
from ledger.payments.money import (
    payment_credit,
    payment_dispute_lose,
    payment_refund_sync,
    payout_complete,
    payout_fail,
    payout_request,
)
from ledger.providers import providers
from ledger.reports import (
    FIGURES,
    BillingGroup,
    BillingPeriod,
    billing_period_resolve,
    billing_report,
)
from ledger.services import (
    charges_reverse,
    credits_adjust,
    earnings_mature,
    hold_capture,
    hold_place,
    hold_release,
    wallet_credit,
)
from tests.hosts.factories import host_create
from tests.ledger.helpers import ledger_state

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User], APIClient]
URL = "/api/v1/admin/reports/billing/"
MARCH_1, MARCH_2, MARCH_3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)


@contextmanager
def posted_on(day: date, hour: int = 12) -> Iterator[None]:
    """Ledger transactions written inside get ``created_at`` on that day (UTC)."""
    moment = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    original = timezone.now
    timezone.now = lambda: moment
    try:
        yield
    finally:
        timezone.now = original


def zeros(**figures: int) -> dict[str, int]:
    return {**dict.fromkeys(FIGURES, 0), **figures}


def capture(job: int, attempt: int, owner: User, gross: int, host: Host | None, key: str) -> None:
    hold_capture(
        job_id=job,
        attempt=attempt,
        host_owner=owner,
        gross_micros=gross,
        fee_micros=gross // 10,
        key=key,
        host_id=None if host is None else host.pk,
    )


@pytest.fixture
def bob(db: None) -> User:
    """A second renter."""
    return User.objects.create_user(username="bob", email="bob@example.com", password="x" * 12)


@pytest.fixture
def boxes(hana: User) -> tuple[Host, Host]:
    return host_create(hana, name="hana-box"), host_create(hana, name="hana-gpu")


def paid(user: User, amount_micros: int) -> Payment:
    """A purchase through the payments app (the demo provider), credited."""
    payment = Payment.objects.create(user=user, amount_micros=amount_micros, provider="demo")
    durable_call(payment_credit, payment_id=payment.pk)
    return payment


@pytest.fixture
def carol(db: None) -> User:
    """A renter whose card payment is disputed after she spent the credits."""
    return User.objects.create_user(username="carol", email="carol@example.com", password="x" * 12)


@pytest.fixture
def month(
    alice: User,
    bob: User,
    hana: User,
    staff: User,
    carol: User,
    boxes: tuple[Host, Host],
    settings: Any,
) -> tuple[Host, Host]:
    """Three days of marketplace, plus a purchase on the day before and the day after.

    1 March: alice buys 10 cr and carol 2 cr (a card payment); staff grant bob 5 cr; alice holds
      4 cr for job 1, which is charged 1 cr on hana-box; carol holds her 2 cr for job 4.
    2 March: job 1 charged 0.5 cr more on hana-box; bob holds 3 cr for job 2, charged 2 cr on
      hana-gpu, and that attempt is lost (reversed); staff take 1 cr back from bob; alice pays
      3 cr by card and 1 cr of it is refunded; carol loses a 2 cr dispute (her wallet is empty:
      the ledger names her only through the payment).
    3 March: job 2's second attempt is charged 0.7 cr on hana-box; alice holds 1 cr for job 3,
      charged 0.3 cr with no host recorded; job 1's hold is released; hana's earnings mature
      and she is paid out 1 cr; a second payout of 1 cr fails.
    """
    box, gpu = boxes
    settings.PAYOUT_MIN_MICROS = 1_000_000
    with posted_on(date(2026, 2, 28)):
        wallet_credit(user=alice, amount_micros=1_000_000, key="buy:0", reason="card")
    with posted_on(MARCH_1):
        wallet_credit(user=alice, amount_micros=10_000_000, key="buy:1", reason="card")
        disputed = paid(carol, 2_000_000)
        wallet_credit(
            user=bob,
            amount_micros=5_000_000,
            key="grant:1",
            reason="welcome",
            source="grant",
            staff_user=staff,
        )
        hold_place(user=alice, job_id=1, amount_micros=4_000_000, key="hold:1")
        capture(1, 1, hana, 1_000_000, box, "usage:1:1:1")
        hold_place(user=carol, job_id=4, amount_micros=2_000_000, key="hold:4")
    with posted_on(MARCH_2):
        capture(1, 1, hana, 500_000, box, "usage:1:1:2")
        hold_place(user=bob, job_id=2, amount_micros=3_000_000, key="hold:2")
        capture(2, 1, hana, 2_000_000, gpu, "usage:2:1:1")
        charges_reverse(job_id=2, attempt=1, key="reverse:2:1")
        credits_adjust(
            user=bob, amount_micros=-1_000_000, reason="goodwill undone", staff_user=staff, key="a"
        )
        refunded = paid(alice, 3_000_000)
        durable_call(payment_refund_sync, payment_id=refunded.pk, refunded_micros=1_000_000)
        durable_call(
            payment_dispute_lose, payment_id=disputed.pk, dispute_id="dp_1", amount_micros=2_000_000
        )
    with posted_on(MARCH_3):
        capture(2, 2, hana, 700_000, box, "usage:2:2:1")
        hold_place(user=alice, job_id=3, amount_micros=1_000_000, key="hold:3")
        capture(3, 1, hana, 300_000, None, "usage:3:1:1")
        hold_release(job_id=1, key="release:1")
        earnings_mature(now=datetime(2026, 4, 30, tzinfo=UTC))
        ConnectedAccount.objects.create(
            user=hana,
            provider="demo",
            stripe_account_id="acct_hana",
            onboarding_status=OnboardingStatus.COMPLETE,
        )
        payout = durable_call(payout_request, owner=hana, amount_micros=1_000_000)
        durable_call(payout_complete, payout_id=payout.pk, transfer_id="tr_1")
        failed = durable_call(payout_request, owner=hana, amount_micros=1_000_000)
        durable_call(payout_fail, payout_id=failed.pk, reason="account closed")
    with posted_on(date(2026, 3, 4)):
        wallet_credit(user=bob, amount_micros=2_000_000, key="buy:4", reason="card")
    return boxes


MARCH = BillingPeriod(first=MARCH_1, last=MARCH_3)
TOTALS = zeros(
    credits_bought_micros=15_000_000,
    grants_micros=4_000_000,
    gross_charges_micros=4_500_000,
    platform_fees_micros=250_000,
    host_earnings_micros=2_250_000,
    reversals_micros=2_000_000,
    refunds_micros=3_000_000,
    payouts_micros=1_000_000,
)


# --- The figures --------------------------------------------------------------------------------


def test_report_by_day_has_exact_figures_for_every_day(month: tuple[Host, Host]) -> None:
    # when
    report = billing_report(period=MARCH, group_by=BillingGroup.DAY)

    # then
    assert [(row.key, row.figures) for row in report.rows] == [
        (
            MARCH_1,
            zeros(
                credits_bought_micros=12_000_000,
                grants_micros=5_000_000,
                gross_charges_micros=1_000_000,
                platform_fees_micros=100_000,
                host_earnings_micros=900_000,
            ),
        ),
        (
            MARCH_2,
            zeros(
                credits_bought_micros=3_000_000,
                grants_micros=-1_000_000,
                gross_charges_micros=2_500_000,
                platform_fees_micros=50_000,
                host_earnings_micros=450_000,
                reversals_micros=2_000_000,
                refunds_micros=3_000_000,
            ),
        ),
        (
            MARCH_3,
            zeros(
                gross_charges_micros=1_000_000,
                platform_fees_micros=100_000,
                host_earnings_micros=900_000,
                payouts_micros=1_000_000,
            ),
        ),
    ]
    assert report.totals == TOTALS


def test_report_by_host_groups_charges_and_their_reversals(month: tuple[Host, Host]) -> None:
    # given
    box, gpu = month

    # when
    report = billing_report(period=MARCH, group_by=BillingGroup.HOST)

    # then: purchases and grants have no host; the no-host row is job 3's charge
    by_host = {row.key: row.figures for row in report.rows}
    assert by_host == {
        box.pk: zeros(
            gross_charges_micros=2_200_000,
            platform_fees_micros=220_000,
            host_earnings_micros=1_980_000,
        ),
        gpu.pk: zeros(gross_charges_micros=2_000_000, reversals_micros=2_000_000),
        None: zeros(
            gross_charges_micros=300_000, platform_fees_micros=30_000, host_earnings_micros=270_000
        ),
    }
    assert report.totals == TOTALS


def test_report_by_user_puts_charges_on_the_renter_and_purchases_on_the_buyer(
    month: tuple[Host, Host], alice: User, bob: User, hana: User, carol: User
) -> None:
    # when
    report = billing_report(period=MARCH, group_by=BillingGroup.USER)

    # then: hana, the host owner, rented nothing: her row is her payout; carol's dispute is hers
    # though her wallet had nothing left to take
    assert [row.key for row in report.rows] == sorted([alice.pk, bob.pk, hana.pk, carol.pk])
    assert {row.username: row.figures for row in report.rows} == {
        "alice": zeros(
            credits_bought_micros=13_000_000,
            gross_charges_micros=1_800_000,
            platform_fees_micros=180_000,
            host_earnings_micros=1_620_000,
            refunds_micros=1_000_000,
        ),
        "bob": zeros(
            grants_micros=4_000_000,
            gross_charges_micros=2_700_000,
            platform_fees_micros=70_000,
            host_earnings_micros=630_000,
            reversals_micros=2_000_000,
        ),
        "hana": zeros(payouts_micros=1_000_000),
        "carol": zeros(credits_bought_micros=2_000_000, refunds_micros=2_000_000),
    }


def test_top_hosts_and_renters_are_ordered_by_gross_charges(
    month: tuple[Host, Host], alice: User, bob: User
) -> None:
    # given
    box, gpu = month

    # when
    report = billing_report(period=MARCH, group_by=BillingGroup.DAY)

    # then: the charge without a host is in no host's total
    assert [(row.key, row.figures["gross_charges_micros"]) for row in report.top_hosts] == [
        (box.pk, 2_200_000),
        (gpu.pk, 2_000_000),
    ]
    assert [(row.username, row.figures["gross_charges_micros"]) for row in report.top_renters] == [
        ("bob", 2_700_000),
        ("alice", 1_800_000),
    ]


def test_gross_minus_reversals_is_fees_plus_host_earnings_in_every_row(
    month: tuple[Host, Host],
) -> None:
    for group in BillingGroup:
        report = billing_report(period=MARCH, group_by=group)
        for figures in [row.figures for row in report.rows] + [report.totals]:
            assert (
                figures["gross_charges_micros"] - figures["reversals_micros"]
                == figures["platform_fees_micros"] + figures["host_earnings_micros"]
            )


def test_report_costs_five_queries_however_many_rows(
    month: tuple[Host, Host], django_assert_num_queries: Any
) -> None:
    for group in BillingGroup:
        with django_assert_num_queries(5):
            billing_report(period=MARCH, group_by=group)


def test_an_empty_period_is_zeros(db: None) -> None:
    # when
    report = billing_report(
        period=BillingPeriod(first=MARCH_1, last=MARCH_2), group_by=BillingGroup.DAY
    )

    # then
    assert [(row.key, row.figures) for row in report.rows] == [
        (MARCH_1, zeros()),
        (MARCH_2, zeros()),
    ]
    assert (report.totals, report.top_hosts, report.top_renters) == (zeros(), [], [])


# --- The period ---------------------------------------------------------------------------------


def test_the_period_defaults_to_the_30_days_that_end_today() -> None:
    assert billing_period_resolve(first=None, last=None, today=date(2026, 3, 31)) == BillingPeriod(
        first=date(2026, 3, 2), last=date(2026, 3, 31)
    )


def test_the_period_includes_both_days() -> None:
    period = billing_period_resolve(first=MARCH_1, last=MARCH_1, today=MARCH_3)
    assert (period.starts_at, period.ends_before, period.days) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 2, tzinfo=UTC),
        1,
    )


# --- The API ------------------------------------------------------------------------------------


def test_api_returns_rows_totals_and_top_lists(
    month: tuple[Host, Host], staff: User, hana: User, client_for: ClientFor
) -> None:
    # given
    box, gpu = month

    # when
    response = client_for(staff).get(URL, {"from": "2026-03-01", "to": "2026-03-03"})

    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["from"], body["to"], body["group_by"]) == ("2026-03-01", "2026-03-03", "day")
    assert [row["day"] for row in body["rows"]] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert body["rows"][1] == {
        "day": "2026-03-02",
        "host": None,
        "host_name": None,
        "owner": None,
        "owner_username": None,
        "user": None,
        "username": None,
        **zeros(
            credits_bought_micros=3_000_000,
            grants_micros=-1_000_000,
            gross_charges_micros=2_500_000,
            platform_fees_micros=50_000,
            host_earnings_micros=450_000,
            reversals_micros=2_000_000,
            refunds_micros=3_000_000,
        ),
    }
    assert body["totals"] == TOTALS
    assert [
        (row["host"], row["host_name"], row["owner"], row["owner_username"])
        for row in body["top_hosts"]
    ] == [(box.pk, "hana-box", hana.pk, "hana"), (gpu.pk, "hana-gpu", hana.pk, "hana")]
    assert [(row["username"], row["gross_charges_micros"]) for row in body["top_renters"]] == [
        ("bob", 2_700_000),
        ("alice", 1_800_000),
    ]


def test_api_by_host_names_each_host_and_its_owner(
    month: tuple[Host, Host], staff: User, hana: User, client_for: ClientFor
) -> None:
    # given
    box, gpu = month

    # when
    response = client_for(staff).get(
        URL, {"from": "2026-03-01", "to": "2026-03-03", "group_by": "host"}
    )

    # then: ordered by host id, the charges without a host last
    assert response.status_code == 200
    rows = [
        (row["host"], row["host_name"], row["owner_username"], row["gross_charges_micros"])
        for row in response.json()["rows"]
    ]
    assert rows == [
        (box.pk, "hana-box", "hana", 2_200_000),
        (gpu.pk, "hana-gpu", "hana", 2_000_000),
        (None, None, None, 300_000),
    ]


def test_api_costs_six_queries(
    month: tuple[Host, Host], staff: User, client_for: ClientFor, django_assert_num_queries: Any
) -> None:
    # given
    client = client_for(staff)

    # when / then: the report's four or five, and one for the host names
    with django_assert_num_queries(6):
        response = client.get(URL, {"from": "2026-03-01", "to": "2026-03-03", "group_by": "user"})
    assert response.status_code == 200


def test_api_csv_has_a_header_and_the_same_numbers(
    month: tuple[Host, Host], staff: User, client_for: ClientFor
) -> None:
    # when
    response = client_for(staff).get(
        URL, {"from": "2026-03-01", "to": "2026-03-03", "group_by": "user", "format": "csv"}
    )

    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="communipute-billing-by-user-2026-03-01-2026-03-03.csv"'
    )
    text = response.content.decode()
    assert text.splitlines()[0] == (
        "user,username,credits_bought_micros,grants_micros,gross_charges_micros,"
        "platform_fees_micros,host_earnings_micros,reversals_micros,refunds_micros,payouts_micros"
    )
    json_rows = client_for(staff).get(
        URL, {"from": "2026-03-01", "to": "2026-03-03", "group_by": "user"}
    )
    expected = [
        [str(row["user"]), row["username"], *(str(row[name]) for name in FIGURES)]
        for row in json_rows.json()["rows"]
    ]
    assert list(csv.reader(io.StringIO(text)))[1:] == expected
    assert len(expected) == 4


def test_api_csv_by_day_lists_every_day(
    month: tuple[Host, Host], staff: User, client_for: ClientFor
) -> None:
    # when
    response = client_for(staff).get(
        URL, {"from": "2026-02-28", "to": "2026-03-01", "format": "csv"}
    )

    # then
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [
        ["day", *FIGURES],
        ["2026-02-28", "1000000", *["0"] * 7],
        ["2026-03-01", "12000000", "5000000", "1000000", "100000", "900000", "0", "0", "0"],
    ]


def test_api_csv_defuses_names_that_a_spreadsheet_would_run(
    alice: User, hana: User, staff: User, client_for: ClientFor
) -> None:
    # given: a host owner names a host like a formula
    host = host_create(hana, name='=HYPERLINK("http://evil")')
    hold_place_after_credit(alice, job_id=5)
    capture(5, 1, hana, 1_000_000, host, "usage:5:1:1")

    # when
    response = client_for(staff).get(URL, {"group_by": "host", "format": "csv"})

    # then
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[1][:4] == [str(host.pk), '\'=HYPERLINK("http://evil")', str(hana.pk), "hana"]


def hold_place_after_credit(user: User, *, job_id: int) -> None:
    wallet_credit(user=user, amount_micros=5_000_000, key=f"buy:{job_id}", reason="card")
    hold_place(user=user, job_id=job_id, amount_micros=5_000_000, key=f"hold:{job_id}")


def test_api_defaults_to_the_last_30_days_by_day(staff: User, client_for: ClientFor) -> None:
    # when
    body = client_for(staff).get(URL).json()

    # then
    today = timezone.now().date()
    assert (body["to"], body["group_by"], len(body["rows"])) == (today.isoformat(), "day", 30)
    assert body["rows"][-1]["day"] == today.isoformat()


def test_api_is_for_staff_only(
    month: tuple[Host, Host], alice: User, api: APIClient, client_for: ClientFor
) -> None:
    # when
    anonymous = api.get(URL)
    renter = client_for(alice).get(URL, {"format": "csv"})

    # then
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (
        401,
        "not_authenticated",
    )
    assert (renter.status_code, renter.json()["error"]["code"]) == (403, "permission_denied")


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"from": "2026-13-01"}, ["from"]),
        ({"to": "yesterday"}, ["to"]),
        ({"group_by": "week"}, ["group_by"]),
        ({"format": "xml"}, ["format"]),
        ({"from": "2026-03-02", "to": "2026-03-01"}, ["from", "to"]),
        ({"from": "2025-03-01", "to": "2026-03-02"}, ["from"]),
        ({"to": "9999-12-31"}, ["to"]),
    ],
)
def test_api_refuses_bad_parameters_with_field_errors_and_changes_nothing(
    month: tuple[Host, Host],
    staff: User,
    client_for: ClientFor,
    params: dict[str, str],
    fields: list[str],
) -> None:
    # given
    before = ledger_state()

    # when
    response = client_for(staff).get(URL, params)

    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert sorted(error["fields"]) == fields
    assert error["message"]
    assert ledger_state() == before


def test_a_year_is_the_longest_period(staff: User, client_for: ClientFor) -> None:
    # when: 2024 was a leap year: 366 days
    response = client_for(staff).get(URL, {"from": "2024-01-01", "to": "2024-12-31"})

    # then
    assert (response.status_code, len(response.json()["rows"])) == (200, 366)


# --- host_id on the ledger ----------------------------------------------------------------------


def test_capture_and_its_reversal_record_the_host(
    alice: User, hana: User, boxes: tuple[Host, Host]
) -> None:
    # given
    box, _gpu = boxes
    hold_place_after_credit(alice, job_id=7)

    # when
    capture(7, 1, hana, 1_000_000, box, "usage:7:1:1")
    reversal = charges_reverse(job_id=7, attempt=1, key="reverse:7:1")

    # then
    assert reversal is not None
    captured = LedgerTransaction.objects.get(key="usage:7:1:1")
    assert (captured.host_id, captured.metadata["host_id"], reversal.host_id) == (
        box.pk,
        box.pk,
        box.pk,
    )


def test_capture_without_a_host_still_works(alice: User, hana: User) -> None:
    # given
    hold_place_after_credit(alice, job_id=8)

    # when: a caller that predates host_id
    txn = hold_capture(
        job_id=8, attempt=1, host_owner=hana, gross_micros=10, fee_micros=1, key="usage:8:1:1"
    )

    # then
    assert (txn.host_id, "host_id" in txn.metadata) == (None, False)


def test_capture_replayed_with_another_host_is_a_conflict(
    alice: User, hana: User, boxes: tuple[Host, Host]
) -> None:
    # given
    box, gpu = boxes
    hold_place_after_credit(alice, job_id=9)
    capture(9, 1, hana, 1_000, box, "usage:9:1:1")
    before = ledger_state()

    # when / then
    with pytest.raises(Exception, match="already used") as error:
        capture(9, 1, hana, 1_000, gpu, "usage:9:1:1")
    assert getattr(error.value, "code", None) == "transaction_key_reused"
    assert ledger_state() == before


@pytest.mark.parametrize("host_id", [0, -1, True, "3"])
def test_capture_refuses_a_bad_host_id(alice: User, hana: User, host_id: Any) -> None:
    # given
    hold_place_after_credit(alice, job_id=11)
    before = ledger_state()

    # when / then
    with pytest.raises(Exception, match="host_id") as error:
        hold_capture(
            job_id=11,
            attempt=1,
            host_owner=hana,
            gross_micros=10,
            fee_micros=1,
            key="usage:11:1:1",
            host_id=host_id,
        )
    assert getattr(error.value, "fields", None) == {"host_id": ["invalid"]}
    assert ledger_state() == before


def test_without_a_host_labels_provider_hosts_are_ids_only(
    month: tuple[Host, Host], staff: User, client_for: ClientFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    monkeypatch.setattr(providers, "host_labels", None)
    box, gpu = month

    # when
    body = client_for(staff).get(URL, {"from": "2026-03-01", "to": "2026-03-03"}).json()

    # then
    assert [(row["host"], row["host_name"], row["owner"]) for row in body["top_hosts"]] == [
        (box.pk, None, None),
        (gpu.pk, None, None),
    ]
