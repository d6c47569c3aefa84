"""holds_capture_many: many usage charges in one transaction, each decided on its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from config.errors import InsufficientCredits, ValidationFailed
from config.transactions import durable_call
from ledger.models import AccountKind, LedgerTransaction, TransactionKind
from ledger.services import (
    Capture,
    CaptureOutcome,
    CaptureResult,
    charges_reverse,
    earnings_mature,
    hold_capture,
    hold_place,
    holds_capture_many,
    wallet_credit,
)
from tests.ledger.helpers import assert_invariants, balance, ledger_state, postings_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def held(alice: User) -> list[int]:
    """Alice holds 10,000 for each of jobs 51, 52 and 53."""
    wallet_credit(user=alice, amount_micros=30_000, key="buy", reason="card payment")
    for job in (51, 52, 53):
        hold_place(user=alice, job_id=job, amount_micros=10_000, key=f"hold:{job}")
    return [51, 52, 53]


def _capture(job: int, owner: User, gross: int, fee: int, key: str, **extra: Any) -> Capture:
    return Capture(
        job_id=job,
        attempt=1,
        host_owner_id=owner.pk,
        gross_micros=gross,
        fee_micros=fee,
        key=key,
        **extra,
    )


def _outcomes(results: Sequence[CaptureResult]) -> list[tuple[str, str, str]]:
    return [(r.capture.key, str(r.outcome), r.code) for r in results]


def test_a_batch_posts_each_capture_as_hold_capture_would(
    held: list[int], hana: User, mallory: User
) -> None:
    # given
    captures = [
        _capture(51, hana, 1_000, 100, "usage:51:1:0", host_id=7, details={"charged_after": 1}),
        _capture(52, mallory, 2_000, 0, "usage:52:1:0"),
        _capture(53, hana, 500, 500, "usage:53:1:0"),
    ]
    # when
    results = holds_capture_many(captures)
    # then
    assert [r.outcome for r in results] == [CaptureOutcome.POSTED] * 3
    first = LedgerTransaction.objects.get(key="usage:51:1:0")
    assert (first.pk, first.kind, first.job_id, first.attempt, first.host_id) == (
        results[0].transaction_id,
        TransactionKind.CAPTURE,
        51,
        1,
        7,
    )
    assert first.metadata == {
        "job_id": 51,
        "attempt": 1,
        "host_owner_id": hana.pk,
        "gross_micros": 1_000,
        "fee_micros": 100,
        "host_id": 7,
        "charged_after": 1,
    }
    assert postings_of(first) == [
        ("escrow", 51, -1_000),
        ("earnings_pending", hana.pk, 900),
        ("revenue", None, 100),
    ]
    # zero legs are left out, as hold_capture leaves them out
    assert postings_of(LedgerTransaction.objects.get(key="usage:52:1:0")) == [
        ("escrow", 52, -2_000),
        ("earnings_pending", mallory.pk, 2_000),
    ]
    assert postings_of(LedgerTransaction.objects.get(key="usage:53:1:0")) == [
        ("escrow", 53, -500),
        ("revenue", None, 500),
    ]
    assert [balance(AccountKind.ESCROW, job_id=job) for job in held] == [9_000, 8_000, 9_500]
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 900
    assert balance(AccountKind.REVENUE) == 600
    assert_invariants()


def test_one_refused_capture_does_not_stop_the_others(held: list[int], hana: User) -> None:
    # given: job 51 has 10,000 left; its two captures fit one at a time, not together
    hold_capture(
        job_id=52, attempt=1, host_owner=hana, gross_micros=300, fee_micros=30, key="usage:52:1:0"
    )
    captures = [
        _capture(51, hana, 6_000, 600, "usage:51:1:0"),
        _capture(51, hana, 6_000, 600, "usage:51:1:6000"),
        _capture(52, hana, 300, 30, "usage:52:1:0"),  # a repeat: same key, same amounts
        _capture(53, hana, 300, 31, "usage:52:1:0b"),
        _capture(99, hana, 300, 30, "usage:99:1:0"),  # no hold
    ]
    # when
    results = holds_capture_many(captures)
    # then
    assert _outcomes(results) == [
        ("usage:51:1:0", "posted", ""),
        ("usage:51:1:6000", "refused", "hold_exceeded"),
        ("usage:52:1:0", "replayed", ""),
        ("usage:52:1:0b", "posted", ""),
        ("usage:99:1:0", "refused", "hold_not_found"),
    ]
    assert results[2].transaction_id == LedgerTransaction.objects.get(key="usage:52:1:0").pk
    assert [balance(AccountKind.ESCROW, job_id=job) for job in held] == [4_000, 9_700, 9_700]
    assert not LedgerTransaction.objects.filter(key__in=["usage:51:1:6000", "usage:99:1:0"])
    assert_invariants()


def test_a_key_used_with_other_amounts_is_a_conflict_and_changes_nothing(
    held: list[int], hana: User
) -> None:
    # given
    holds_capture_many([_capture(51, hana, 1_000, 100, "usage:51:1:0")])
    before = ledger_state()
    # when: two posters read the same charge and charge on from it differently; or the same
    # amounts are said to come from another host
    results = holds_capture_many([_capture(51, hana, 1_500, 150, "usage:51:1:0")])
    other_host = holds_capture_many([_capture(51, hana, 1_000, 100, "usage:51:1:0", host_id=9)])
    # then
    assert _outcomes(results) == [("usage:51:1:0", "conflict", "transaction_key_reused")]
    assert _outcomes(other_host) == [("usage:51:1:0", "conflict", "transaction_key_reused")]
    assert ledger_state() == before


def test_a_malformed_batch_is_refused_whole(held: list[int], hana: User) -> None:
    before = ledger_state()
    twice = [_capture(51, hana, 10, 1, "k"), _capture(52, hana, 10, 1, "k")]
    with pytest.raises(ValidationFailed) as duplicate:
        holds_capture_many(twice)
    with pytest.raises(ValidationFailed) as fee_too_big:
        holds_capture_many([_capture(51, hana, 10, 1, "a"), _capture(52, hana, 10, 11, "b")])
    assert (duplicate.value.code, fee_too_big.value.code) == ("invalid_key", "invalid_amount")
    assert ledger_state() == before
    assert holds_capture_many([]) == []


def test_a_batch_is_part_of_its_callers_transaction_and_rolls_back_with_it(
    held: list[int], hana: User
) -> None:
    # given: an entry point that posts a batch, then fails to record it
    posted: list[list[str]] = []

    def entry_point() -> None:
        results = holds_capture_many(
            [_capture(51, hana, 10, 1, "a"), _capture(52, hana, 10, 1, "b")]
        )
        posted.append([r.capture.key for r in results if r.outcome is CaptureOutcome.POSTED])
        raise RuntimeError("the caller could not record the charges")

    before = ledger_state()
    # when
    with pytest.raises(RuntimeError):
        durable_call(entry_point)
    # then: the batch was written, and went back with the caller's transaction
    assert posted == [["a", "b"]]
    assert ledger_state() == before


@pytest.mark.postgres
def test_a_batch_is_three_statements_however_many_captures(
    held: list[int], hana: User, mallory: User
) -> None:
    # given: every account exists (a first charge created the earnings and revenue accounts)
    holds_capture_many([_capture(j, u, 10, 1, f"warm:{j}") for j, u in ((51, hana), (52, mallory))])
    holds_capture_many([_capture(53, hana, 10, 1, "warm:53")])
    captures = [
        _capture(job, owner, 100, 10, f"usage:{job}:{n}")
        for n in range(10)
        for job, owner in ((51, hana), (52, mallory), (53, hana))
    ]
    # when
    with CaptureQueriesContext(connection) as queries:
        results = holds_capture_many(captures)
    # then: lock, look for repeats, write (the test's savepoint and its release aside)
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert [s.split()[0] for s in statements] == ["SELECT", "SELECT", "WITH"]
    assert {r.outcome for r in results} == {CaptureOutcome.POSTED}
    assert_invariants()


def test_batched_captures_mature_like_single_ones_and_are_never_reversed_once_matured(
    held: list[int], hana: User, settings: Any
) -> None:
    # given
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 0
    holds_capture_many([_capture(51, hana, 1_000, 100, "u:1"), _capture(52, hana, 400, 40, "u:2")])
    # when
    matured = earnings_mature()
    before = ledger_state()
    # then: matured at once (the ledger alone: by age); a reversal would have to take
    # available earnings, which it never does (issue 11): refused, nothing moved
    assert matured == 1
    assert balance(AccountKind.EARNINGS_AVAILABLE, user=hana) == 1_260
    with pytest.raises(InsufficientCredits) as refused:
        charges_reverse(job_id=51, attempt=1, key="reverse:51:1")
    assert refused.value.code == "insufficient_earnings"
    assert ledger_state() == before
    assert_invariants()
