"""Each ledger service: what it posts, what it refuses (changing nothing), idempotency."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from config.errors import (
    Conflict,
    InsufficientCredits,
    NotFound,
    PermissionDenied,
    ServiceError,
    ValidationFailed,
)
from config.transactions import durable_call
from ledger.models import Account, AccountKind, LedgerTransaction, TransactionKind
from ledger.providers import providers
from ledger.selectors import wallet_balances
from ledger.services import (
    charges_reverse,
    credits_adjust,
    earnings_mature,
    hold_capture,
    hold_place,
    hold_release,
    wallet_credit,
)
from ledger.services.posting import (
    Leg,
    _post,
    earnings_available_ref,
    platform_ref,
)
from tests.ledger.helpers import assert_invariants, balance, ledger_state, postings_of

pytestmark = pytest.mark.django_db

JOB = 41


def _refused(call: Callable[[], Any], error: type[ServiceError], code: str) -> ServiceError:
    """Run a call that must be refused, as an entry point would (its own durable transaction);
    assert the error and that the ledger did not change."""
    before = ledger_state()
    with pytest.raises(error) as refused:
        durable_call(call)
    assert refused.value.code == code
    assert ledger_state() == before
    assert_invariants()
    return refused.value


def _funded(user: User, micros: int = 1_000_000, key: str = "buy-1") -> LedgerTransaction:
    return wallet_credit(user=user, amount_micros=micros, key=key, reason="card payment")


# --- wallet_credit ----------------------------------------------------------------------------


def test_wallet_credit_purchase_moves_credits_from_stripe_clearing(alice: User) -> None:
    # when
    txn = wallet_credit(
        user=alice, amount_micros=5_000_000, key="stripe-event:evt_1", reason="card payment"
    )
    # then
    assert (txn.kind, txn.memo, txn.created_by) == (TransactionKind.PURCHASE, "card payment", None)
    assert postings_of(txn) == [
        ("stripe_clearing", None, -5_000_000),
        ("wallet", alice.pk, 5_000_000),
    ]
    assert wallet_balances(alice) == {
        "balance_micros": 5_000_000,
        "held_micros": 0,
        "available_micros": 5_000_000,
    }
    assert balance(AccountKind.STRIPE_CLEARING) == -5_000_000
    assert_invariants()


def test_wallet_credit_grant_records_the_staff_user(alice: User, staff: User) -> None:
    # when
    txn = wallet_credit(
        user=alice,
        amount_micros=2_000_000,
        key="grant-1",
        reason="welcome credits",
        source="grant",
        staff_user=staff,
    )
    # then
    assert (txn.kind, txn.created_by, txn.memo) == (TransactionKind.GRANT, staff, "welcome credits")
    assert postings_of(txn) == [("grants", None, -2_000_000), ("wallet", alice.pk, 2_000_000)]
    assert balance(AccountKind.WALLET, user=alice) == 2_000_000
    assert_invariants()


@pytest.mark.parametrize("granter", [None, "alice"])
def test_wallet_credit_grant_needs_staff(alice: User, granter: str | None) -> None:
    # given
    staff_user = alice if granter else None
    # when / then
    _refused(
        lambda: wallet_credit(
            user=alice,
            amount_micros=1,
            key="grant-x",
            reason="free money",
            source="grant",
            staff_user=staff_user,
        ),
        PermissionDenied,
        "staff_required",
    )


@pytest.mark.parametrize("amount", [0, -1, True, 1.5, "10"])
def test_wallet_credit_refuses_bad_amounts(alice: User, amount: Any) -> None:
    _refused(
        lambda: wallet_credit(user=alice, amount_micros=amount, key="k", reason="r"),
        ValidationFailed,
        "invalid_amount",
    )


@pytest.mark.parametrize(
    ("key", "reason", "code"),
    [("", "r", "invalid_key"), ("k" * 201, "r", "invalid_key"), ("k", " ", "reason_required")],
)
def test_wallet_credit_refuses_a_bad_key_or_reason(
    alice: User, key: str, reason: str, code: str
) -> None:
    _refused(
        lambda: wallet_credit(user=alice, amount_micros=1, key=key, reason=reason),
        ValidationFailed,
        code,
    )


def test_wallet_credit_same_key_returns_the_first_transaction(alice: User) -> None:
    # given
    first = _funded(alice, 3_000_000, key="stripe-event:evt_2")
    before = ledger_state()
    # when
    again = _funded(alice, 3_000_000, key="stripe-event:evt_2")
    # then
    assert (again.pk, again.is_replay, first.is_replay) == (first.pk, True, False)
    assert ledger_state() == before
    assert balance(AccountKind.WALLET, user=alice) == 3_000_000


def test_wallet_credit_same_key_other_amount_is_a_conflict(alice: User) -> None:
    # given
    _funded(alice, 3_000_000, key="stripe-event:evt_3")
    # when / then
    error = _refused(
        lambda: _funded(alice, 3_000_001, key="stripe-event:evt_3"),
        Conflict,
        "transaction_key_reused",
    )
    assert error.status_code == 409


def test_wallet_credit_same_key_other_user_is_a_conflict(alice: User, mallory: User) -> None:
    # given
    _funded(alice, 3_000_000, key="stripe-event:evt_4")
    # when / then
    _refused(
        lambda: _funded(mallory, 3_000_000, key="stripe-event:evt_4"),
        Conflict,
        "transaction_key_reused",
    )


# --- credits_adjust ---------------------------------------------------------------------------


def test_credits_adjust_adds_and_takes_back_with_reason_and_staff(alice: User, staff: User) -> None:
    # given
    _funded(alice, 1_000_000)
    # when
    up = credits_adjust(
        user=alice, amount_micros=500_000, reason="outage refund", staff_user=staff, key="adj-1"
    )
    down = credits_adjust(
        user=alice, amount_micros=-200_000, reason="double refund", staff_user=staff, key="adj-2"
    )
    # then
    assert (up.kind, up.memo, up.created_by) == (TransactionKind.ADJUSTMENT, "outage refund", staff)
    assert postings_of(down) == [("grants", None, 200_000), ("wallet", alice.pk, -200_000)]
    assert down.metadata == {"staff_user_id": staff.pk, "summary": "-0.200000 cr"}
    assert balance(AccountKind.WALLET, user=alice) == 1_300_000
    assert balance(AccountKind.GRANTS) == -300_000
    assert_invariants()


def test_credits_adjust_never_overdraws_the_wallet(alice: User, staff: User) -> None:
    # given
    _funded(alice, 1_000_000)
    # when / then
    error = _refused(
        lambda: credits_adjust(
            user=alice, amount_micros=-1_000_001, reason="oops", staff_user=staff, key="adj-3"
        ),
        InsufficientCredits,
        "insufficient_credits",
    )
    assert (error.status_code, error.fields) == (
        402,
        {"available_micros": ["1000000 micro-credits left"], "required_micros": ["1000001 needed"]},
    )


@pytest.mark.parametrize(
    ("amount", "reason", "as_staff", "error", "code"),
    [
        (0, "r", True, ValidationFailed, "invalid_amount"),
        (5, "", True, ValidationFailed, "reason_required"),
        (5, "r", False, PermissionDenied, "staff_required"),
    ],
)
def test_credits_adjust_refusals(
    alice: User,
    staff: User,
    amount: int,
    reason: str,
    as_staff: bool,
    error: type[ServiceError],
    code: str,
) -> None:
    staff_user = staff if as_staff else alice
    _refused(
        lambda: credits_adjust(
            user=alice, amount_micros=amount, reason=reason, staff_user=staff_user, key="adj"
        ),
        error,
        code,
    )


# --- hold_place -------------------------------------------------------------------------------


def test_hold_place_moves_credits_into_the_jobs_escrow(alice: User) -> None:
    # given
    _funded(alice, 1_000_000)
    # when
    txn = hold_place(user=alice, job_id=JOB, amount_micros=600_000, key="hold:41")
    # then
    assert (txn.kind, txn.job_id, txn.metadata) == (TransactionKind.HOLD, JOB, {"job_id": JOB})
    assert postings_of(txn) == [("wallet", alice.pk, -600_000), ("escrow", JOB, 600_000)]
    assert wallet_balances(alice) == {
        "balance_micros": 1_000_000,
        "held_micros": 600_000,
        "available_micros": 400_000,
    }
    assert Account.objects.get(kind=AccountKind.ESCROW, job_id=JOB).user == alice
    assert_invariants()


def test_hold_place_again_on_the_same_job_adds_to_the_escrow(alice: User) -> None:
    # given
    _funded(alice, 1_000_000)
    hold_place(user=alice, job_id=JOB, amount_micros=600_000, key="hold:41:a")
    # when
    hold_place(user=alice, job_id=JOB, amount_micros=100_000, key="hold:41:b")
    # then
    assert balance(AccountKind.ESCROW, job_id=JOB) == 700_000
    assert balance(AccountKind.WALLET, user=alice) == 300_000
    assert_invariants()


def test_hold_place_without_enough_credits_is_402_and_changes_nothing(alice: User) -> None:
    # given
    _funded(alice, 1_000_000)
    # when / then: not even the escrow account is created
    error = _refused(
        lambda: hold_place(user=alice, job_id=JOB, amount_micros=1_000_001, key="hold:41"),
        InsufficientCredits,
        "insufficient_credits",
    )
    assert error.status_code == 402
    assert error.message == "not enough credits: 1000000 micro-credits left, 1000001 needed"


def test_hold_place_from_a_user_without_a_wallet_is_402(alice: User) -> None:
    _refused(
        lambda: hold_place(user=alice, job_id=JOB, amount_micros=1, key="hold:41"),
        InsufficientCredits,
        "insufficient_credits",
    )


def test_hold_place_on_someone_elses_job_is_a_conflict(alice: User, mallory: User) -> None:
    # given
    _funded(alice, 1_000_000, key="buy-a")
    _funded(mallory, 1_000_000, key="buy-m")
    hold_place(user=alice, job_id=JOB, amount_micros=100, key="hold:41")
    # when / then
    _refused(
        lambda: hold_place(user=mallory, job_id=JOB, amount_micros=100, key="hold:41:m"),
        Conflict,
        "hold_owner_mismatch",
    )


@pytest.mark.parametrize("job_id", [0, -3, True, "41"])
def test_hold_place_refuses_a_bad_job_id(alice: User, job_id: Any) -> None:
    _funded(alice)
    _refused(
        lambda: hold_place(user=alice, job_id=job_id, amount_micros=1, key="hold"),
        ValidationFailed,
        "invalid",
    )


def test_hold_place_same_key_other_amount_is_a_conflict(alice: User) -> None:
    # given
    _funded(alice)
    hold_place(user=alice, job_id=JOB, amount_micros=100, key="hold:41")
    # when / then
    _refused(
        lambda: hold_place(user=alice, job_id=JOB, amount_micros=101, key="hold:41"),
        Conflict,
        "transaction_key_reused",
    )


def test_hold_place_replay_returns_the_first_even_when_the_wallet_is_now_empty(
    alice: User,
) -> None:
    # given: the first hold took everything
    _funded(alice, 100)
    first = hold_place(user=alice, job_id=JOB, amount_micros=100, key="hold:41")
    # when
    again = hold_place(user=alice, job_id=JOB, amount_micros=100, key="hold:41")
    # then
    assert again.pk == first.pk
    assert balance(AccountKind.ESCROW, job_id=JOB) == 100


# --- hold_capture -----------------------------------------------------------------------------


@pytest.fixture
def held(alice: User) -> int:
    """Alice holds 1 credit for job 41."""
    _funded(alice, 1_000_000)
    hold_place(user=alice, job_id=JOB, amount_micros=1_000_000, key="hold:41")
    return JOB


def test_hold_capture_splits_the_charge_between_host_and_platform(
    held: int, alice: User, hana: User
) -> None:
    # when
    txn = hold_capture(
        job_id=held,
        attempt=1,
        host_owner=hana,
        gross_micros=1_000,
        fee_micros=100,
        key="usage:41:1:1",
    )
    # then
    assert postings_of(txn) == [
        ("escrow", held, -1_000),
        ("earnings_pending", hana.pk, 900),
        ("revenue", None, 100),
    ]
    assert (txn.kind, txn.job_id, txn.attempt) == (TransactionKind.CAPTURE, held, 1)
    assert txn.metadata == {
        "job_id": held,
        "attempt": 1,
        "host_owner_id": hana.pk,
        "gross_micros": 1_000,
        "fee_micros": 100,
    }
    revenue = Account.objects.get(kind=AccountKind.REVENUE)
    assert (revenue.shard, revenue.balance_micros) == (held % 16, 100)
    assert wallet_balances(alice) == {
        "balance_micros": 999_000,
        "held_micros": 999_000,
        "available_micros": 0,
    }
    assert_invariants()


@pytest.mark.parametrize(
    ("fee", "lines"),
    [
        (0, [("escrow", JOB, -500), ("earnings_pending", "hana", 500)]),
        (500, [("escrow", JOB, -500), ("revenue", None, 500)]),
    ],
)
def test_hold_capture_leaves_out_zero_lines(
    held: int, hana: User, fee: int, lines: list[tuple[str, Any, int]]
) -> None:
    # when
    txn = hold_capture(
        job_id=held, attempt=1, host_owner=hana.pk, gross_micros=500, fee_micros=fee, key="u"
    )
    # then
    expected = [
        (kind, hana.pk if owner == "hana" else owner, amount) for kind, owner, amount in lines
    ]
    assert postings_of(txn) == expected
    assert_invariants()


def test_hold_capture_beyond_the_escrow_is_refused(held: int, hana: User) -> None:
    # given
    hold_capture(
        job_id=held, attempt=1, host_owner=hana, gross_micros=999_000, fee_micros=0, key="u1"
    )
    # when / then: the host's pending account is not even created
    error = _refused(
        lambda: hold_capture(
            job_id=held, attempt=1, host_owner=hana, gross_micros=1_001, fee_micros=0, key="u2"
        ),
        InsufficientCredits,
        "hold_exceeded",
    )
    assert error.message == (
        "the amount exceeds what is left of the hold for job 41: "
        "1000 micro-credits left, 1001 needed"
    )


def test_hold_capture_of_a_job_without_a_hold_is_not_found(hana: User) -> None:
    _refused(
        lambda: hold_capture(
            job_id=7, attempt=1, host_owner=hana, gross_micros=1, fee_micros=0, key="u"
        ),
        NotFound,
        "hold_not_found",
    )


@pytest.mark.parametrize(
    ("gross", "fee", "attempt", "code"),
    [
        (0, 0, 1, "invalid_amount"),
        (-10, 0, 1, "invalid_amount"),
        (10, 11, 1, "invalid_amount"),
        (10, -1, 1, "invalid_amount"),
        (10, 1, 0, "invalid"),
    ],
)
def test_hold_capture_refuses_bad_input(
    held: int, hana: User, gross: int, fee: int, attempt: int, code: str
) -> None:
    _refused(
        lambda: hold_capture(
            job_id=held,
            attempt=attempt,
            host_owner=hana,
            gross_micros=gross,
            fee_micros=fee,
            key="u",
        ),
        ValidationFailed,
        code,
    )


def test_hold_capture_replays_and_refuses_a_reused_key(held: int, hana: User) -> None:
    # given
    first = hold_capture(
        job_id=held, attempt=1, host_owner=hana, gross_micros=300, fee_micros=30, key="usage:41:1:7"
    )
    # when
    again = hold_capture(
        job_id=held, attempt=1, host_owner=hana, gross_micros=300, fee_micros=30, key="usage:41:1:7"
    )
    # then
    assert again.pk == first.pk
    assert balance(AccountKind.ESCROW, job_id=held) == 999_700
    _refused(
        lambda: hold_capture(
            job_id=held,
            attempt=1,
            host_owner=hana,
            gross_micros=300,
            fee_micros=31,
            key="usage:41:1:7",
        ),
        Conflict,
        "transaction_key_reused",
    )


def test_hold_capture_takes_two_statements_on_postgres(
    held: int, hana: User, django_assert_num_queries: Any
) -> None:
    # given: the accounts exist (the first charge of a host owner creates theirs)
    hold_capture(job_id=held, attempt=1, host_owner=hana, gross_micros=1, fee_micros=0, key="u0")
    hold_capture(job_id=held, attempt=1, host_owner=hana, gross_micros=10, fee_micros=1, key="u1")
    # when / then: lock the accounts, then write the transaction, postings and balances (one
    # statement on PostgreSQL, three on SQLite), in the caller's transaction: no savepoint
    statements = 2 if connection.vendor == "postgresql" else 4
    with django_assert_num_queries(statements) as captured:
        hold_capture(
            job_id=held, attempt=1, host_owner=hana, gross_micros=10, fee_micros=1, key="u2"
        )
    assert captured.captured_queries[0]["sql"].startswith("SELECT id, kind, user_id")
    assert balance(AccountKind.ESCROW, job_id=held) == 999_979
    assert_invariants()


# --- hold_release -----------------------------------------------------------------------------


def test_hold_release_returns_the_remainder_to_the_wallet(
    held: int, alice: User, hana: User
) -> None:
    # given
    hold_capture(
        job_id=held, attempt=1, host_owner=hana, gross_micros=250_000, fee_micros=25_000, key="u"
    )
    # when
    txn = hold_release(job_id=held, key="release:41")
    # then
    assert txn is not None
    assert postings_of(txn) == [("escrow", held, -750_000), ("wallet", alice.pk, 750_000)]
    assert wallet_balances(alice) == {
        "balance_micros": 750_000,
        "held_micros": 0,
        "available_micros": 750_000,
    }
    assert_invariants()


def test_hold_release_again_returns_the_first_release_or_none(held: int) -> None:
    # given
    first = hold_release(job_id=held, key="release:41")
    before = ledger_state()
    # when
    again = hold_release(job_id=held, key="release:41")
    other_key = hold_release(job_id=held, key="release:41:b")
    # then
    assert first is not None
    assert again is not None
    assert (again.pk, other_key) == (first.pk, None)
    assert ledger_state() == before


def test_hold_release_of_a_job_without_a_hold_is_not_found() -> None:
    _refused(lambda: hold_release(job_id=404, key="release:404"), NotFound, "hold_not_found")


def test_a_release_key_reused_for_another_job_is_a_conflict(held: int, alice: User) -> None:
    # given
    hold_release(job_id=held, key="release")
    hold_place(user=alice, job_id=42, amount_micros=10, key="hold:42")
    # when / then
    _refused(lambda: hold_release(job_id=42, key="release"), Conflict, "transaction_key_reused")


# --- charges_reverse --------------------------------------------------------------------------


def _capture(job: int, attempt: int, owner: User, gross: int, fee: int, key: str) -> None:
    hold_capture(
        job_id=job, attempt=attempt, host_owner=owner, gross_micros=gross, fee_micros=fee, key=key
    )


def test_charges_reverse_undoes_one_attempt_only(held: int, alice: User, hana: User) -> None:
    # given: attempt 1 charged twice, then was lost; attempt 2 charged once
    _capture(held, 1, hana, 1_000, 100, "u:1:1")
    _capture(held, 1, hana, 2_000, 200, "u:1:2")
    _capture(held, 2, hana, 500, 50, "u:2:1")
    # when
    txn = charges_reverse(job_id=held, attempt=1, key="reverse:41:1")
    # then
    assert txn is not None
    assert sorted(postings_of(txn)) == [
        ("earnings_pending", hana.pk, -2_700),
        ("escrow", held, 3_000),
        ("revenue", None, -300),
    ]
    assert (txn.kind, txn.job_id, txn.attempt) == (TransactionKind.REVERSAL, held, 1)
    assert balance(AccountKind.ESCROW, job_id=held) == 999_500
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 450
    assert balance(AccountKind.REVENUE) == 50
    assert_invariants()


def test_charges_reverse_again_reverses_only_what_is_new(held: int, hana: User) -> None:
    # given
    _capture(held, 1, hana, 1_000, 100, "u:1:1")
    first = charges_reverse(job_id=held, attempt=1, key="reverse:41:1")
    # when: the same key, then a late charge and another reversal
    again = charges_reverse(job_id=held, attempt=1, key="reverse:41:1")
    nothing = charges_reverse(job_id=held, attempt=1, key="reverse:41:1:b")
    _capture(held, 1, hana, 400, 40, "u:1:2")
    late = charges_reverse(job_id=held, attempt=1, key="reverse:41:1:c")
    # then
    assert first is not None
    assert again is not None
    assert late is not None
    assert (again.pk, nothing) == (first.pk, None)
    assert sorted(postings_of(late)) == [
        ("earnings_pending", hana.pk, -360),
        ("escrow", held, 400),
        ("revenue", None, -40),
    ]
    assert balance(AccountKind.ESCROW, job_id=held) == 1_000_000
    assert_invariants()


def test_charges_reverse_never_takes_matured_earnings_nor_books_a_platform_loss(
    held: int, hana: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: earnings that matured (the ledger alone, no job facts: by age) and were partly
    # paid out (simulated) -- what metering can no longer produce, since a job's earnings
    # mature only after it settled (issue 11)
    monkeypatch.setattr(providers, "job_facts", None)
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 0
    _capture(held, 1, hana, 1_000, 100, "u:1:1")
    assert earnings_mature() == 1
    _capture(held, 1, hana, 200, 20, "u:1:2")
    available, clearing = (
        earnings_available_ref(hana.pk),
        platform_ref(AccountKind.PAYOUTS_CLEARING),
    )
    with transaction.atomic(durable=True):
        _post(
            kind=TransactionKind.ADJUSTMENT,
            key="simulated-payout",
            accounts=[available, clearing],
            legs=[Leg(available, -600), Leg(clearing, 600)],
        )
    before = ledger_state()
    # when / then: 1,080 owed, 180 pending: refused, nothing moved, platform_loss untouched
    _refused(
        lambda: charges_reverse(job_id=held, attempt=1, key="reverse:41:1"),
        InsufficientCredits,
        "insufficient_earnings",
    )
    assert ledger_state() == before
    assert balance(AccountKind.PLATFORM_LOSS) == 0


def test_charges_reverse_after_maturity_reverses_each_charge_once(
    held: int, hana: User, settings: Any
) -> None:
    # given: a charge reversed out of the pending earnings
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 0
    _capture(held, 1, hana, 1_000, 100, "u:1:1")
    first = charges_reverse(job_id=held, attempt=1, key="reverse:41:1")
    before = ledger_state()
    # when
    second = charges_reverse(job_id=held, attempt=1, key="reverse:41:1:b")
    # then
    assert first is not None
    capture_id = LedgerTransaction.objects.get(key="u:1:1").pk
    assert first.metadata == {
        "job_id": held,
        "attempt": 1,
        "through_capture_id": capture_id,
        "gross_micros": 1_000,
        "fee_micros": 100,
    }
    assert second is None
    assert ledger_state() == before
    assert balance(AccountKind.EARNINGS_AVAILABLE, user=hana) == 0
    assert_invariants()


def test_charges_reverse_of_an_attempt_without_charges_is_none(held: int) -> None:
    before = ledger_state()
    assert charges_reverse(job_id=held, attempt=3, key="reverse:41:3") is None
    assert ledger_state() == before


def test_charges_reverse_of_a_job_without_a_hold_is_not_found() -> None:
    _refused(
        lambda: charges_reverse(job_id=404, attempt=1, key="reverse:404:1"),
        NotFound,
        "hold_not_found",
    )


# --- earnings_mature --------------------------------------------------------------------------


def test_earnings_mature_after_the_dispute_window(held: int, hana: User, settings: Any) -> None:
    # given
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 3600
    _capture(held, 1, hana, 1_000, 100, "u:1:1")
    captured_at = LedgerTransaction.objects.get(key="u:1:1").created_at
    # when: just before the window ends, then when it has
    early = earnings_mature(now=captured_at + timedelta(seconds=3599))
    on_time = earnings_mature(now=captured_at + timedelta(seconds=3600))
    again = earnings_mature(now=captured_at + timedelta(seconds=3600))
    # then
    assert (early, on_time, again) == (0, 1, 0)
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 0
    assert balance(AccountKind.EARNINGS_AVAILABLE, user=hana) == 900
    maturity = LedgerTransaction.objects.get(kind=TransactionKind.MATURITY)
    assert postings_of(maturity) == [
        ("earnings_pending", hana.pk, -900),
        ("earnings_available", hana.pk, 900),
    ]
    assert_invariants()


def test_earnings_mature_only_the_old_part(held: int, hana: User, settings: Any) -> None:
    # given: one old charge, one young one
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 3600
    _capture(held, 1, hana, 1_000, 100, "u:1:1")
    cutoff = timezone.now() + timedelta(seconds=3600)
    _capture(held, 1, hana, 500, 50, "u:1:2")
    # when
    written = earnings_mature(now=cutoff)
    # then
    assert written == 1
    assert balance(AccountKind.EARNINGS_AVAILABLE, user=hana) == 900
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 450
    assert_invariants()


def test_a_reversed_charge_never_matures(held: int, hana: User, settings: Any) -> None:
    # given: a charge, a later one, and the first one reversed
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 3600
    _capture(held, 1, hana, 1_000, 100, "u:1:1")
    _capture(held, 2, hana, 500, 50, "u:2:1")
    charges_reverse(job_id=held, attempt=1, key="reverse:41:1")
    first_at = LedgerTransaction.objects.get(key="u:1:1").created_at
    # when: the first charge is past the window, the second is not
    written = earnings_mature(now=first_at + timedelta(seconds=3600))
    # then: nothing matures: the old charge was reversed, the young one is not due
    assert written == 0
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 450
    assert balance(AccountKind.EARNINGS_AVAILABLE, user=hana) == 0
    assert_invariants()


# --- The caller's transaction -----------------------------------------------------------------


def test_services_join_the_entry_points_transaction(alice: User, hana: User) -> None:
    # given: an entry point's transaction that posts a credit and a hold
    def submit() -> None:
        _funded(alice, 1_000_000)
        hold_place(user=alice, job_id=JOB, amount_micros=400_000, key="hold:join")
        raise RuntimeError("the entry point fails after both posts")

    # when
    with pytest.raises(RuntimeError):
        durable_call(submit)
    # then: both posts were part of it, so neither remains
    assert not LedgerTransaction.objects.filter(key__in=["buy-1", "hold:join"]).exists()
    assert_invariants()


def test_a_refused_post_leaves_nothing_in_the_entry_points_transaction(alice: User) -> None:
    # given: inside one transaction, a credit, then a hold the wallet can't cover
    def submit() -> tuple[int, int]:
        _funded(alice, 300_000)
        before = ledger_state()
        with pytest.raises(InsufficientCredits):
            hold_place(user=alice, job_id=JOB, amount_micros=400_000, key="hold:too-much")
        # then: the refusal wrote nothing and the transaction is still usable
        assert ledger_state() == before
        hold_place(user=alice, job_id=JOB, amount_micros=300_000, key="hold:enough")
        return balance(AccountKind.WALLET, user=alice), balance(AccountKind.ESCROW, job_id=JOB)

    # when
    assert durable_call(submit) == (0, 300_000)
    # then
    assert not LedgerTransaction.objects.filter(key="hold:too-much").exists()
    assert_invariants()


def test_the_writer_refuses_to_run_outside_a_transaction(alice: User) -> None:
    # given: the test case's own atomic block stands in for "none open": leave it aside
    wallet = platform_ref(AccountKind.GRANTS)
    blocks = connection.atomic_blocks
    assert blocks, "pytest-django wraps the test in a transaction"
    connection.in_atomic_block = False
    try:
        with pytest.raises(AssertionError, match="inside the caller's"):
            _post(
                kind=TransactionKind.GRANT,
                key="outside",
                accounts=[wallet],
                legs=[Leg(wallet, 0)],
            )
    finally:
        connection.in_atomic_block = True
    assert not LedgerTransaction.objects.filter(key="outside").exists()
