"""Real threads racing the ledger on PostgreSQL: locks, not luck, keep the money right."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from django.db import connections
from django.utils import timezone

from accounts.models import User
from config.errors import InsufficientCredits, ServiceError
from ledger import services
from ledger.models import AccountKind, LedgerTransaction, Posting
from ledger.selectors import wallet_balances
from tests.ledger.helpers import assert_invariants, balance, entry_point

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Each call here is an entry point of its own (a view's, a task's), as in production.
hold_capture = entry_point(services.hold_capture)
hold_place = entry_point(services.hold_place)
hold_release = entry_point(services.hold_release)
wallet_credit = entry_point(services.wallet_credit)

T = TypeVar("T")


def _race(threads: int, work: Callable[[int], T]) -> list[T | Exception]:
    """Run ``work(i)`` in ``threads`` threads released together; results or errors, in order."""
    start = threading.Barrier(threads)

    def run(i: int) -> T | Exception:
        try:
            start.wait(timeout=30)
            return work(i)
        except Exception as error:
            return error
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(run, range(threads)))


def _outcomes(results: Sequence[object]) -> Counter[str]:
    return Counter(
        error.code
        if isinstance(error, ServiceError)
        else type(error).__name__
        if isinstance(error, Exception)
        else "ok"
        for error in results
    )


def test_twenty_holds_race_for_a_wallet_that_covers_seven(alice: User) -> None:
    # given: 7 holds of 1 credit fit, an 8th does not
    wallet_credit(user=alice, amount_micros=7_500_000, key="buy", reason="card payment")
    # when
    results = _race(
        20,
        lambda i: hold_place(user=alice, job_id=100 + i, amount_micros=1_000_000, key=f"hold:{i}"),
    )
    # then
    assert _outcomes(results) == {"ok": 7, "insufficient_credits": 13}
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert {r.status_code for r in refused} == {402}
    assert wallet_balances(alice) == {
        "balance_micros": 7_500_000,
        "held_micros": 7_000_000,
        "available_micros": 500_000,
    }
    assert LedgerTransaction.objects.filter(kind="hold").count() == 7
    assert_invariants()


def test_concurrent_captures_never_exceed_the_escrow(alice: User, hana: User) -> None:
    # given: an escrow of 10 units
    wallet_credit(user=alice, amount_micros=10_000, key="buy", reason="card payment")
    hold_place(user=alice, job_id=7, amount_micros=10_000, key="hold:7")
    # when: 20 charges of one unit each
    results = _race(
        20,
        lambda i: hold_capture(
            job_id=7, attempt=1, host_owner=hana, gross_micros=1_000, fee_micros=100, key=f"u:{i}"
        ),
    )
    # then
    assert _outcomes(results) == {"ok": 10, "hold_exceeded": 10}
    assert balance(AccountKind.ESCROW, job_id=7) == 0
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 9_000
    assert balance(AccountKind.REVENUE) == 1_000
    assert_invariants()


def test_the_same_key_from_ten_threads_writes_one_transaction(alice: User) -> None:
    # when
    results = _race(
        10,
        lambda i: wallet_credit(
            user=alice, amount_micros=5_000_000, key="stripe-event:evt_1", reason="card payment"
        ),
    )
    # then
    ids = {r.pk for r in results if isinstance(r, LedgerTransaction)}
    assert (len(ids), _outcomes(results)) == (1, {"ok": 10})
    assert LedgerTransaction.objects.count() == 1
    assert Posting.objects.count() == 2
    assert balance(AccountKind.WALLET, user=alice) == 5_000_000
    assert_invariants()


def test_the_same_capture_key_from_ten_threads_charges_once(alice: User, hana: User) -> None:
    # given
    wallet_credit(user=alice, amount_micros=10_000, key="buy", reason="card payment")
    hold_place(user=alice, job_id=7, amount_micros=10_000, key="hold:7")
    # when
    results = _race(
        10,
        lambda i: hold_capture(
            job_id=7, attempt=1, host_owner=hana, gross_micros=3_000, fee_micros=300, key="u:7:1:1"
        ),
    )
    # then
    assert len({r.pk for r in results if isinstance(r, LedgerTransaction)}) == 1
    assert _outcomes(results) == {"ok": 10}
    assert balance(AccountKind.ESCROW, job_id=7) == 7_000
    assert_invariants()


def test_mixed_operations_on_shared_accounts_never_deadlock(alice: User, hana: User) -> None:
    # given: two jobs of alice's, charged, topped up and released at the same time; each kind
    # of operation touches the shared rows (wallet, escrows, earnings, revenue) in its own
    # "natural" order, so only the pk-ordered locking keeps them from deadlocking
    wallet_credit(user=alice, amount_micros=1_000_000, key="buy", reason="card payment")
    for job in (1, 2):
        hold_place(user=alice, job_id=job, amount_micros=100_000, key=f"hold:{job}")

    def work(i: int) -> object:
        job = 1 + i % 2
        if i % 3 == 0:
            return hold_place(user=alice, job_id=job, amount_micros=1_000, key=f"top:{i}")
        if i % 3 == 1:
            return hold_capture(
                job_id=job,
                attempt=1,
                host_owner=hana,
                gross_micros=500,
                fee_micros=50,
                key=f"u:{i}",
            )
        return hold_release(job_id=job, key=f"release:{i}")

    # when
    results = _race(18, work)
    # then: nothing but refusals the rules allow (a charge after a release emptied the escrow)
    assert set(_outcomes(results)) <= {"ok", "hold_exceeded"}
    assert (
        wallet_balances(alice)["balance_micros"]
        + balance(AccountKind.EARNINGS_PENDING, user=hana)
        + balance(AccountKind.REVENUE)
        == 1_000_000
    )
    assert_invariants()


def test_two_beats_maturing_earnings_at_once_make_them_available_once(
    alice: User, hana: User, mallory: User, settings: Any
) -> None:
    """Two schedulers (a second beat by mistake) run the maturity task at the same moment, each
    with its own cutoff: each owner's earnings become available once, in full."""
    # given: two owners with pending earnings past the dispute window
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 0
    wallet_credit(user=alice, amount_micros=20_000, key="buy", reason="card payment")
    for job, owner in ((7, hana), (8, mallory)):
        hold_place(user=alice, job_id=job, amount_micros=10_000, key=f"hold:{job}")
        hold_capture(
            job_id=job, attempt=1, host_owner=owner, gross_micros=5_000, fee_micros=500,
            key=f"u:{job}",
        )  # fmt: skip
    later = timezone.now() + timedelta(seconds=1)

    # when: eight runs race, their cutoffs a microsecond apart
    results = _race(8, lambda i: services.earnings_mature(now=later + timedelta(microseconds=i)))

    # then: no run failed, and all of it moved exactly once
    assert not [r for r in results if isinstance(r, Exception)], results
    for owner in (hana, mallory):
        assert balance(AccountKind.EARNINGS_PENDING, user=owner) == 0
        assert balance(AccountKind.EARNINGS_AVAILABLE, user=owner) == 4_500
    assert_invariants()
