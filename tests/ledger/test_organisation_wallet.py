"""An organisation's wallet (docs/pools.md, "The institution pays"): bought through the payment
providers (demo, and Stripe over real HTTP with its webhook), granted by staff, taken back by a
refund (the organisation restricted for a shortfall), reconciled; the permission matrix of
every endpoint it adds."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from accounts.models import Membership, MembershipRole, Organisation, User
from config.errors import InsufficientCredits, PermissionDenied
from config.transactions import durable_call
from ledger.models import Account, AccountKind, AccountRestriction, LedgerTransaction
from ledger.payments.models import Payment
from ledger.payments.money import payment_refund_sync
from ledger.payments.purchases import payment_create
from ledger.selectors import organisation_balances, wallet_balances
from ledger.services import (
    hold_place,
    ledger_reconcile,
    organisation_credit,
    organisation_hold_place,
    wallet_credit,
)
from tests.ledger.conftest import WEBHOOK_SECRET, wait_for
from tests.ledger.helpers import ledger_state
from tests.ledger.payment_steps import WEBHOOK_PATH, card_pay, localstripe_client, webhook_post
from tests.ledger.stripe_fakes import Localstripe

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


def _user(name: str, **extra: Any) -> User:
    return User.objects.create_user(
        username=name, email=f"{name}@example.com", password="correct horse 1", **extra
    )


@pytest.fixture
def olga(db: None) -> User:
    return _user("olga")


@pytest.fixture
def sven(db: None) -> User:
    """A data steward of the lab (a member, not an admin)."""
    return _user("sven")


@pytest.fixture
def lab(olga: User, alice: User, sven: User) -> Organisation:
    org = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=org, user=olga, role=MembershipRole.ADMIN)
    Membership.objects.create(organisation=org, user=alice)
    Membership.objects.create(organisation=org, user=sven, is_steward=True)
    return org


def available(org: Organisation) -> int:
    return organisation_balances(org.pk)["available_micros"]


# --- buying ----------------------------------------------------------------------------------


def test_an_admins_demo_purchase_funds_the_organisations_wallet_not_their_own(
    olga: User, lab: Organisation, settings: Settings, client_for: Callable[[User], APIClient]
) -> None:
    # given
    settings.PAYMENT_PROVIDER = "demo"

    # when
    response = client_for(olga).post(
        f"/api/v1/organisations/{lab.pk}/wallet/payments/",
        {"amount_micros": 3_000_000},
        format="json",
        HTTP_IDEMPOTENCY_KEY="buy-1",
    )
    again = client_for(olga).post(
        f"/api/v1/organisations/{lab.pk}/wallet/payments/",
        {"amount_micros": 3_000_000},
        format="json",
        HTTP_IDEMPOTENCY_KEY="buy-1",
    )

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["organisation"], body["client_secret"]) == (
        "succeeded",
        lab.pk,
        None,
    )
    assert again.json()["id"] == body["id"]
    assert available(lab) == 3_000_000
    assert wallet_balances(olga)["available_micros"] == 0
    assert Payment.objects.get().organisation_id == lab.pk
    # the admin's own purchases list only their own
    assert client_for(olga).get("/api/v1/payments/").json()["results"] == []
    lines = client_for(olga).get(f"/api/v1/organisations/{lab.pk}/wallet/transactions/").json()
    assert [
        (line["kind"], line["amount_micros"], line["by_username"]) for line in lines["results"]
    ] == [("purchase", 3_000_000, "olga")]
    listed = client_for(olga).get(f"/api/v1/organisations/{lab.pk}/wallet/payments/").json()
    assert [(p["id"], p["organisation"], p["bought_by"]) for p in listed["results"]] == [
        (body["id"], lab.pk, "olga")
    ]


def test_a_stripe_purchase_for_the_organisation_is_credited_once_by_the_webhook(
    olga: User,
    lab: Organisation,
    stripe_payments: Localstripe,
    live_server: Any,
    http_as: Callable[[User], requests.Session],
) -> None:
    # given
    stripe_payments.webhook_register(f"{live_server.url}{WEBHOOK_PATH}", WEBHOOK_SECRET)
    http = http_as(olga)

    # when: the admin buys, pays in the browser, and Stripe delivers the event twice more
    created = http.post(
        f"/api/v1/organisations/{lab.pk}/wallet/payments/", json={"amount_micros": 25_000_000}
    )
    body = created.json()
    before_webhook = available(lab)
    card_pay(stripe_payments, body["provider_payment_id"])
    wait_for(lambda: Payment.objects.get(pk=body["id"]).credited_at is not None)
    delivered = localstripe_client(stripe_payments).v1.events.list(
        {"type": "payment_intent.succeeded"}
    )
    event = next(e for e in delivered.data if e.data.object.id == body["provider_payment_id"])
    replies = [webhook_post(live_server.url, event.to_dict(), WEBHOOK_SECRET) for _ in range(2)]

    # then
    assert created.status_code == 201, body
    assert (body["status"], body["organisation"]) == ("pending", lab.pk)
    assert body["client_secret"].startswith(f"{body['provider_payment_id']}_secret_")
    assert before_webhook == 0
    assert [r.status_code for r in replies] == [200, 200]
    assert available(lab) == 25_000_000
    assert wallet_balances(olga)["available_micros"] == 0
    assert LedgerTransaction.objects.filter(key=f"purchase:{body['id']}").count() == 1
    assert ledger_reconcile(full=True).problems == []


# --- grants ----------------------------------------------------------------------------------


def test_staff_grant_credits_to_the_organisation_and_no_one_else_may(
    lab: Organisation, staff: User, olga: User, db: None
) -> None:
    # given
    before = ledger_state()

    # when: the organisation's admin is not staff
    with pytest.raises(PermissionDenied) as refused:
        durable_call(
            organisation_credit,
            organisation=lab,
            amount_micros=1_000_000,
            key="grant:x",
            reason="budget",
            staff_user=olga,
        )

    # then
    assert refused.value.code == "staff_required"
    assert ledger_state() == before

    # and staff grant through the command, once per key
    out = StringIO()
    for _ in range(2):
        call_command(
            "organisation_grant",
            str(lab.pk),
            "2000000",
            staff="sam",
            reason="the lab's budget",
            key="grant:lab:1",
            stdout=out,
        )
    assert available(lab) == 2_000_000
    grant = LedgerTransaction.objects.get(key="grant:lab:1")
    assert (grant.kind, grant.created_by_id, grant.memo) == ("grant", staff.pk, "the lab's budget")
    assert "posted before: nothing new" in out.getvalue()
    with pytest.raises(CommandError, match="no organisation"):
        call_command("organisation_grant", "999999", "1", staff="sam", reason="x")


# --- refunds of an organisation's purchase ---------------------------------------------------


def test_a_refund_takes_back_from_the_organisation_and_restricts_it_for_the_shortfall(
    olga: User, alice: User, lab: Organisation, settings: Settings, db: None
) -> None:
    # given: the lab bought 5 credits; alice's pool job holds 3 of them; alice has her own
    settings.PAYMENT_PROVIDER = "demo"
    payment = payment_create(user=olga, amount_micros=5_000_000, organisation=lab).payment
    durable_call(
        wallet_credit, user=alice, amount_micros=1_000_000, key="own", reason="alice's own"
    )
    durable_call(
        organisation_hold_place,
        organisation_id=lab.pk,
        user=alice,
        job_id=900_001,
        amount_micros=3_000_000,
        key="job-hold:900001",
    )

    # when: the whole purchase is refunded
    durable_call(payment_refund_sync, payment_id=payment.pk, refunded_micros=5_000_000)

    # then: 2 back from the wallet, 3 from platform_loss, the lab restricted — not olga
    assert available(lab) == 0
    restriction = AccountRestriction.objects.get()
    assert (restriction.payment_id, restriction.shortfall_micros) == (payment.pk, 3_000_000)
    with pytest.raises(PermissionDenied) as refused:
        durable_call(
            organisation_hold_place,
            organisation_id=lab.pk,
            user=alice,
            job_id=900_002,
            amount_micros=1,
            key="job-hold:900002",
        )
    assert refused.value.code == "account_restricted"
    # the members' and the buyer's own wallets are not restricted
    durable_call(hold_place, user=alice, job_id=900_003, amount_micros=1, key="job-hold:900003")
    assert wallet_balances(alice)["available_micros"] == 999_999

    # and when the lab buys again, the purchase repays the shortfall first and lifts it
    payment_create(user=olga, amount_micros=4_000_000, organisation=lab)
    restriction.refresh_from_db()
    assert (restriction.recovered_micros, restriction.lifted_at is not None) == (3_000_000, True)
    assert available(lab) == 1_000_000
    assert ledger_reconcile(full=True).problems == []


# --- holds -----------------------------------------------------------------------------------


def test_a_hold_the_wallet_cannot_cover_names_it_and_writes_nothing(
    lab: Organisation, alice: User, staff: User, db: None
) -> None:
    # given
    durable_call(
        organisation_credit,
        organisation=lab,
        amount_micros=500,
        key="g",
        reason="a little",
        staff_user=staff,
    )
    before = ledger_state()

    # when
    with pytest.raises(InsufficientCredits) as refused:
        durable_call(
            organisation_hold_place,
            organisation_id=lab.pk,
            user=alice,
            job_id=7,
            amount_micros=501,
            key="job-hold:7",
        )

    # then
    assert refused.value.code == "insufficient_credits"
    assert f"organisation {lab.pk}" in refused.value.message
    assert ledger_state() == before


def test_a_non_member_can_not_hold_from_the_wallet(
    lab: Organisation, mallory: User, staff: User, db: None
) -> None:
    durable_call(
        organisation_credit,
        organisation=lab,
        amount_micros=500,
        key="g",
        reason="x",
        staff_user=staff,
    )
    before = ledger_state()
    with pytest.raises(PermissionDenied) as refused:
        durable_call(
            organisation_hold_place,
            organisation_id=lab.pk,
            user=mallory,
            job_id=7,
            amount_micros=1,
            key="job-hold:7",
        )
    assert refused.value.code == "not_a_member"
    assert ledger_state() == before


# --- reconciliation and the database's guards ------------------------------------------------


def test_reconciliation_covers_the_organisations_wallet(
    lab: Organisation, alice: User, staff: User, db: None
) -> None:
    # given: a grant and a hold
    durable_call(
        organisation_credit,
        organisation=lab,
        amount_micros=5_000,
        key="g",
        reason="x",
        staff_user=staff,
    )
    durable_call(
        organisation_hold_place,
        organisation_id=lab.pk,
        user=alice,
        job_id=11,
        amount_micros=2_000,
        key="job-hold:11",
    )
    assert ledger_reconcile(full=True).problems == []

    # when: the organisation wallet's cached balance is edited behind the ledger's back
    wallet = Account.objects.get(kind=AccountKind.ORGANISATION_WALLET)
    Account.objects.filter(pk=wallet.pk).update(balance_micros=9_999)

    # then
    problems = ledger_reconcile(full=True).problems
    assert [(p.invariant, p.account_id) for p in problems] == [
        ("balance_matches_postings", wallet.pk)
    ]


def test_an_incremental_run_checks_the_organisations_wallet_among_the_new_postings(
    lab: Organisation, alice: User, staff: User, db: None
) -> None:
    # given: a clean full run, then the wallet's cached balance edited behind the ledger's back
    durable_call(
        organisation_credit,
        organisation=lab,
        amount_micros=5_000,
        key="g1",
        reason="x",
        staff_user=staff,
    )
    assert ledger_reconcile(full=True).is_clean
    wallet = Account.objects.get(kind=AccountKind.ORGANISATION_WALLET)
    Account.objects.filter(pk=wallet.pk).update(balance_micros=5_007)

    # when: new postings touch it (a hold), and the next run goes
    durable_call(
        organisation_hold_place,
        organisation_id=lab.pk,
        user=alice,
        job_id=12,
        amount_micros=2_000,
        key="job-hold:12",
    )
    run = ledger_reconcile()

    # then
    assert ("balance_matches_postings", wallet.pk) in [
        (p.invariant, p.account_id) for p in run.problems
    ]


def test_an_organisation_wallet_must_name_only_its_organisation(
    lab: Organisation, alice: User, db: None
) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.create(
            kind=AccountKind.ORGANISATION_WALLET,
            organisation=lab,
            user=alice,
            must_not_be_negative=True,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.create(
            kind=AccountKind.WALLET, organisation=lab, user=alice, must_not_be_negative=True
        )
    Account.objects.create(
        kind=AccountKind.ORGANISATION_WALLET, organisation=lab, must_not_be_negative=True
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.create(
            kind=AccountKind.ORGANISATION_WALLET, organisation=lab, must_not_be_negative=True
        )
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ledger_account SET balance_micros = -1 WHERE kind = 'organisation_wallet'"
        )


# --- the permission matrix -------------------------------------------------------------------

ENDPOINTS = {
    "wallet": ("get", "wallet/"),
    "me": ("get", "wallet/me/"),
    "transactions": ("get", "wallet/transactions/"),
    "payments": ("post", "wallet/payments/"),
    "payments_list": ("get", "wallet/payments/"),
    "reports": ("get", "reports/"),
    "reports_csv": ("get", "reports/?format=csv"),
}
# who -> endpoint -> status; a member who is a data steward is a member here
EXPECTED = {
    "admin": {
        "payments_list": 200,
        "wallet": 200,
        "me": 200,
        "transactions": 200,
        "payments": 201,
        "reports": 200,
        "reports_csv": 200,
    },
    "member": {
        "payments_list": 403,
        "wallet": 403,
        "me": 200,
        "transactions": 403,
        "payments": 403,
        "reports": 403,
        "reports_csv": 403,
    },
    "steward": {
        "payments_list": 403,
        "wallet": 403,
        "me": 200,
        "transactions": 403,
        "payments": 403,
        "reports": 403,
        "reports_csv": 403,
    },
    "non_member": dict.fromkeys(ENDPOINTS, 404),
    "anonymous": dict.fromkeys(ENDPOINTS, 401),
}


@pytest.mark.parametrize("who", list(EXPECTED))
def test_the_permission_matrix_of_the_organisations_endpoints(
    who: str,
    lab: Organisation,
    olga: User,
    alice: User,
    sven: User,
    mallory: User,
    settings: Settings,
    client_for: Callable[[User], APIClient],
) -> None:
    # given
    settings.PAYMENT_PROVIDER = "demo"
    users = {"admin": olga, "member": alice, "steward": sven, "non_member": mallory}
    client = client_for(users[who]) if who in users else APIClient()
    payments_before = Payment.objects.count()

    # when
    got = {}
    for name, (method, path) in ENDPOINTS.items():
        url = f"/api/v1/organisations/{lab.pk}/{path}"
        if method == "post":
            response = client.post(url, {"amount_micros": 1_000_000}, format="json")
        else:
            response = client.get(url)
        got[name] = response.status_code
        if response.status_code >= 400:
            assert "error" in response.json(), (name, response.content)

    # then
    assert got == EXPECTED[who]
    created = 1 if who == "admin" else 0
    assert Payment.objects.count() == payments_before + created
    assert available(lab) == (1_000_000 if who == "admin" else 0)
    # an organisation that doesn't exist answers as one you're not in
    if who in users:
        assert client.get("/api/v1/organisations/999999/wallet/me/").status_code == 404
