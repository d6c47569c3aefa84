"""Incremental reconciliation and maturity (issue 17), on PostgreSQL with real threads: a run
reads only what is new since the last one, and misses nothing a full run would see in it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from accounts.models import User
from config.transactions import durable_call
from ledger import services
from ledger.models import (
    Account,
    AccountKind,
    LedgerCheckpoint,
    LedgerTransaction,
    Posting,
    ReconciliationMode,
    TransactionKind,
)
from ledger.providers import providers
from ledger.services import JobFact
from ledger.services import earnings as earnings_module
from ledger.services.earnings import _maturity_due_scan
from ledger.services.posting import (
    Leg,
    _post,
    earnings_available_ref,
    platform_ref,
)
from ledger.services.reconcile import CHECKPOINT, _full_check, _window_check
from tests.ledger.helpers import (
    assert_invariants,
    assert_kept_sums,
    assert_maturity_states,
    balance,
    entry_point,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

hold_capture = entry_point(services.hold_capture)
hold_place = entry_point(services.hold_place)
hold_release = entry_point(services.hold_release)
charges_reverse = entry_point(services.charges_reverse)
wallet_credit = entry_point(services.wallet_credit)

T = TypeVar("T")


def _threads(*works: Callable[[], T]) -> list[T | Exception]:
    """Run each of ``works`` in its own thread, released together; results or errors."""
    start = threading.Barrier(len(works))

    def run(work: Callable[[], T]) -> T | Exception:
        try:
            start.wait(timeout=30)
            return work()
        except Exception as error:
            return error
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(works)) as pool:
        return list(pool.map(run, works))


def _jobs(renter: User, owners: list[User], jobs: range, *, charges: int = 3) -> None:
    """Each job held, charged a few times by its owner's host and released."""
    for job in jobs:
        owner = owners[job % len(owners)]
        hold_place(user=renter, job_id=job, amount_micros=10_000, key=f"hold:{job}")
        for n in range(charges):
            hold_capture(
                job_id=job, attempt=1, host_owner=owner, gross_micros=1_000, fee_micros=100,
                key=f"u:{job}:{n}",
            )  # fmt: skip
        hold_release(job_id=job, key=f"release:{job}")


def _adjust(
    key: str, legs: list[Leg], kind: TransactionKind = TransactionKind.ADJUSTMENT
) -> LedgerTransaction:
    def post() -> LedgerTransaction:
        posted = _post(kind=kind, key=key, accounts=[leg.account for leg in legs], legs=legs)
        assert posted is not None
        return posted

    return durable_call(post)


def _forge(key: str, lines: list[tuple[Account, int]]) -> LedgerTransaction:
    """A transaction written behind the posting service's back: postings, no balance moved."""
    txn = LedgerTransaction.objects.create(key=key, kind=TransactionKind.ADJUSTMENT)
    for account, amount in lines:
        Posting.objects.create(transaction=txn, account=account, amount_micros=amount)
    return txn


def _account(kind: AccountKind, user: User | None = None) -> Account:
    return Account.objects.get(kind=kind, user=user)


def _max_posting() -> int:
    return Posting.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


@pytest.fixture
def ledger(alice: User, hana: User, mallory: User) -> None:
    """Alice bought 1 credit and ran jobs 1-4 on hana's and mallory's hosts."""
    wallet_credit(user=alice, amount_micros=1_000_000, key="buy", reason="card payment")
    _jobs(alice, [hana, mallory], range(1, 5))


# --- Reconciliation -----------------------------------------------------------------------------


def test_the_first_run_is_full_then_runs_read_only_the_new_postings(
    ledger: None, alice: User, hana: User, mallory: User
) -> None:
    # given: the first run (full), which keeps the sums up to the horizon
    first = services.ledger_reconcile()
    assert (first.mode, first.reason, first.is_clean) == ("full", "the first run", True)
    assert first.through_posting_id == _max_posting() == assert_kept_sums()
    before = _max_posting()
    # when: more work, then a run
    _jobs(alice, [hana, mallory], range(5, 8))
    report = services.ledger_reconcile()
    # then: incremental, clean, it read exactly the new postings, and it kept their sums
    new = Posting.objects.filter(pk__gt=before)
    assert (report.mode, report.reason, report.is_clean) == ("incremental", "", True)
    assert report.postings_checked == new.count() > 0
    assert report.transactions_checked == new.values("transaction").distinct().count()
    assert report.accounts_checked == new.values("account").distinct().count()
    assert report.through_posting_id == _max_posting() == assert_kept_sums()
    # and a run with nothing new reads nothing
    idle = services.ledger_reconcile()
    assert (idle.mode, idle.is_clean, idle.postings_checked, idle.transactions_checked) == (
        "incremental",
        True,
        0,
        0,
    )


def test_an_incremental_run_finds_what_a_full_run_finds_among_the_new_postings(
    ledger: None, alice: User, hana: User, mallory: User
) -> None:
    """Every invariant, broken by the postings after the checkpoint: the incremental checks
    list exactly the problems of the full checks on the same data."""
    services.ledger_reconcile()
    _jobs(alice, [hana, mallory], range(5, 8))
    facts = {
        5: JobFact(is_finished=True, cap_micros=1_000_000, charged_micros=1),  # cost differs
        6: JobFact(is_finished=False, cap_micros=2_000),  # charged 3,000
        8: JobFact(is_finished=True, cap_micros=10_000),  # its escrow still holds 10,000
    }

    def job_facts(job_ids: frozenset[int]) -> Mapping[int, JobFact]:
        return {job: facts.get(job, JobFact(is_finished=True)) for job in job_ids}

    hold_place(user=alice, job_id=8, amount_micros=10_000, key="hold:8")
    wallet, stripe = _account(AccountKind.WALLET, alice), _account(AccountKind.STRIPE_CLEARING)
    # a transaction moving platform_loss that is neither a refund nor a purchase
    _adjust(
        "loss",
        [
            Leg(platform_ref(AccountKind.PLATFORM_LOSS), -5),
            Leg(platform_ref(AccountKind.GRANTS), 5),
        ],
    )
    # mallory paid out 500 that never matured (granted into available earnings)
    available = earnings_available_ref(mallory.pk)
    _adjust(
        "grant-into-earnings", [Leg(platform_ref(AccountKind.GRANTS), -500), Leg(available, 500)]
    )
    _adjust(
        "early-payout",
        [Leg(available, -500), Leg(platform_ref(AccountKind.PAYOUTS_CLEARING), 500)],
        TransactionKind.PAYOUT,
    )
    with transaction.atomic():
        # postings written without their balances: the wallet's rebuilt balance goes negative;
        # and one unbalanced transaction (PostgreSQL would refuse both at commit: rolled back)
        _forge("forged", [(wallet, -2_000_000), (stripe, 2_000_000)])
        _forge("unbalanced", [(wallet, 1), (stripe, 2)])
        checkpoint = LedgerCheckpoint.objects.get(name=CHECKPOINT)

        # when
        incremental = _window_check(checkpoint, job_facts)
        full = _full_check(job_facts)
        transaction.set_rollback(True)

    # then: the same problems, in the same order, and one of each invariant
    assert incremental.problems == full.problems
    assert sorted({problem.invariant for problem in full.problems}) == sorted(services.INVARIANTS)


def test_a_problem_found_incrementally_is_reported_by_a_full_run(ledger: None, alice: User) -> None:
    # given
    services.ledger_reconcile()
    _adjust(
        "loss",
        [
            Leg(platform_ref(AccountKind.PLATFORM_LOSS), -5),
            Leg(platform_ref(AccountKind.GRANTS), 5),
        ],
    )
    # when
    report = services.ledger_reconcile()
    # then: the run that reports it is a full one (it rebuilt the sums), and so is the next
    assert (report.mode, report.reason) == ("full", "the incremental run found 1 problem")
    assert [problem.invariant for problem in report.problems] == ["platform_loss_paths"]
    assert report.problems[0].transaction_id == LedgerTransaction.objects.get(key="loss").pk
    again = services.ledger_reconcile()
    assert (again.mode, again.reason, len(again.problems)) == (
        "full",
        "the last run was not clean",
        1,
    )
    assert_kept_sums()


def test_a_posting_that_commits_after_a_later_one_is_still_checked(
    ledger: None, alice: User, settings: Any
) -> None:
    """A transaction draws its posting ids, stays open while a later one commits and a run
    goes by, then commits: the next run checks it, although its ids are below ids it saw."""
    settings.RECONCILE_HORIZON_WAIT_SECONDS = 0.3
    services.ledger_reconcile()
    drawn, release = threading.Event(), threading.Event()

    def late() -> list[int]:
        # a transaction the posting service writes (it locks its accounts first), one that
        # moves platform_loss outside its paths, so that checking it shows
        def post() -> list[int]:
            txn = _post(
                kind=TransactionKind.ADJUSTMENT,
                key="late",
                accounts=[
                    platform_ref(AccountKind.PLATFORM_LOSS),
                    platform_ref(AccountKind.GRANTS),
                ],
                legs=[
                    Leg(platform_ref(AccountKind.PLATFORM_LOSS), -5),
                    Leg(platform_ref(AccountKind.GRANTS), 5),
                ],
            )
            assert txn is not None
            ids = list(Posting.objects.filter(transaction=txn).values_list("pk", flat=True))
            drawn.set()
            assert release.wait(timeout=30)
            return ids

        return durable_call(post)

    def meanwhile() -> tuple[int, Any]:
        assert drawn.wait(timeout=30)
        wallet_credit(user=alice, amount_micros=1_000, key="buy-2", reason="card payment")
        later = _max_posting()
        report = services.ledger_reconcile()
        release.set()
        return later, report

    # when: the late one holds its ids while a later one commits and a run goes by
    results: list[Any] = _threads(late, meanwhile)
    late_ids, (later_id, during) = results
    # then: the ids committed out of order; that run saw the later one and no problem, and
    # kept its checkpoint below the late ids (the horizon did not pass the open transaction)
    assert max(late_ids) < later_id
    assert (during.mode, during.is_clean) == ("incremental", True)
    assert during.through_posting_id < min(late_ids)
    # and the next run checks the late postings
    after = services.ledger_reconcile()
    assert [(p.invariant, p.transaction_id) for p in after.problems] == [
        ("platform_loss_paths", LedgerTransaction.objects.get(key="late").pk)
    ]
    assert after.reason == "the incremental run found 1 problem"


def test_a_posting_tampered_before_the_checkpoint_is_found_by_the_full_run(
    ledger: None, alice: User
) -> None:
    # given: every posting so far is in the kept sums
    services.ledger_reconcile()
    purchase = LedgerTransaction.objects.get(key="buy")
    # when: someone edits two of its postings (balanced, so that only the balances tell)
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # the append-only trigger off
        cursor.execute(
            "UPDATE ledger_posting SET amount_micros = amount_micros + "
            "CASE WHEN amount_micros > 0 THEN 7 ELSE -7 END WHERE transaction_id = %s",
            [purchase.pk],
        )
        cursor.execute("SET session_replication_role = DEFAULT")
    incremental = services.ledger_reconcile()
    full = services.ledger_reconcile(full=True)
    # then: an incremental run reads nothing before its checkpoint, so it can't see it; the
    # full run does, and the run after it is full again
    assert (incremental.mode, incremental.is_clean) == ("incremental", True)
    assert (full.mode, full.reason) == ("full", "asked for")
    wallet, stripe = _account(AccountKind.WALLET, alice), _account(AccountKind.STRIPE_CLEARING)
    assert [(p.invariant, p.account_id) for p in full.problems] == sorted(
        [("balance_matches_postings", wallet.pk), ("balance_matches_postings", stripe.pk)],
        key=lambda problem: problem[1],
    )
    assert services.ledger_reconcile().reason == "the last run was not clean"


def test_runs_at_once_while_charges_commit_take_turns_and_keep_the_sums_exact(
    ledger: None, alice: User, hana: User, mallory: User
) -> None:
    # given
    services.ledger_reconcile()

    def charges(first: int) -> None:
        _jobs(alice, [hana, mallory], range(first, first + 3), charges=4)

    # when: three runs and two streams of charges at once
    results = _threads(
        lambda: charges(10),
        lambda: charges(20),
        services.ledger_reconcile,
        services.ledger_reconcile,
        services.ledger_reconcile,
    )
    # then: no run failed and every one was clean
    assert not [result for result in results if isinstance(result, Exception)], results
    assert all(report.is_clean for report in results[2:])  # type: ignore[union-attr]
    # and the kept sums are the postings up to the checkpoint; a last run takes in the rest
    assert_kept_sums()
    last = services.ledger_reconcile()
    assert (last.mode, last.is_clean, last.through_posting_id) == (
        "incremental",
        True,
        _max_posting(),
    )
    assert_kept_sums()
    assert services.ledger_reconcile(full=True).is_clean


def test_a_full_run_comes_once_a_day(ledger: None, settings: Any) -> None:
    # given
    settings.RECONCILE_FULL_EVERY_HOURS = 24
    services.ledger_reconcile()
    LedgerCheckpoint.objects.filter(name=CHECKPOINT).update(
        full_at=timezone.now() - timedelta(hours=23)
    )
    assert services.ledger_reconcile().mode == ReconciliationMode.INCREMENTAL
    # when: a day since the last full run
    LedgerCheckpoint.objects.filter(name=CHECKPOINT).update(
        full_at=timezone.now() - timedelta(hours=24)
    )
    report = services.ledger_reconcile()
    # then
    assert (report.mode, report.reason) == ("full", "a full run every 24 h")
    assert services.ledger_reconcile().mode == ReconciliationMode.INCREMENTAL


# --- Maturity -----------------------------------------------------------------------------------


class Settlements:
    """Job facts for maturity: the jobs settled so far, and when."""

    def __init__(self) -> None:
        self.at: dict[int, datetime] = {}

    def __call__(self, job_ids: frozenset[int]) -> Mapping[int, JobFact]:
        return {
            job: JobFact(is_finished=job in self.at, settled_at=self.at.get(job)) for job in job_ids
        }


def _owners_due(owners: list[User], cutoff: datetime) -> dict[int, int]:
    """What the full computation over every posting says is due for each owner now."""
    return {
        owner.pk: _maturity_due_scan(_account(AccountKind.EARNINGS_PENDING, owner), cutoff)
        for owner in owners
    }


def _available(owners: list[User]) -> dict[int, int]:
    return {owner.pk: balance(AccountKind.EARNINGS_AVAILABLE, user=owner) for owner in owners}


def _mature_and_compare(owners: list[User], now: datetime, settings: Any) -> dict[int, int]:
    """Run maturity at ``now``: it must move what the full computation said was due, and
    leave nothing due."""
    cutoff = now - timedelta(seconds=settings.EARNINGS_DISPUTE_WINDOW_SECONDS)
    due, before = _owners_due(owners, cutoff), _available(owners)
    services.earnings_mature(now=now)
    moved = {owner: _available(owners)[owner] - before[owner] for owner in before}
    assert moved == due
    assert _owners_due(owners, cutoff) == dict.fromkeys(due, 0)
    assert_maturity_states()
    return moved


def test_maturity_moves_what_the_full_computation_says_at_every_cutoff(
    alice: User, hana: User, mallory: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs settle at different times, a lost attempt is reversed, a clock goes back, a
    capture is stamped after its job settled: at each run the incremental maturity moves
    exactly what the computation over every posting says is due, each earning once."""
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 3600
    settled = Settlements()
    monkeypatch.setattr(providers, "job_facts", settled)
    owners = [hana, mallory]
    wallet_credit(user=alice, amount_micros=1_000_000, key="buy", reason="card payment")
    for job in (1, 2, 3, 4):
        hold_place(user=alice, job_id=job, amount_micros=50_000, key=f"hold:{job}")
    for job, owner in ((1, hana), (2, hana), (3, mallory)):
        for n in range(2):
            hold_capture(
                job_id=job, attempt=1, host_owner=owner, gross_micros=1_000 * job,
                fee_micros=100 * job, key=f"u:{job}:1:{n}",
            )  # fmt: skip
    hold_capture(
        job_id=4, attempt=1, host_owner=mallory, gross_micros=4_000, fee_micros=400, key="u:4"
    )
    captured = LedgerTransaction.objects.get(key="u:4").created_at
    t0 = timezone.now()
    window = timedelta(seconds=3600)

    def cut(moment: datetime) -> datetime:
        return moment + window  # the ``now`` whose cutoff is ``moment``

    def at(seconds: int) -> datetime:
        return cut(t0 + timedelta(seconds=seconds))

    # nothing settled: nothing moves, however old
    assert _mature_and_compare(owners, cut(captured - timedelta(seconds=4)), settings) == {
        hana.pk: 0,
        mallory.pk: 0,
    }
    # job 4 settled 5 s before its capture's time (two servers' clocks): at a cutoff between
    # the two nothing is due, after both its capture is
    settled.at[4] = captured - timedelta(seconds=5)
    assert _mature_and_compare(owners, cut(captured - timedelta(seconds=2)), settings) == {
        hana.pk: 0,
        mallory.pk: 0,
    }
    assert _mature_and_compare(owners, cut(captured + timedelta(seconds=1)), settings) == {
        hana.pk: 0,
        mallory.pk: 3_600,
    }
    # job 1 settles at t0+10: not yet at a cutoff t0+5, then at t0+15
    assert _mature_and_compare(owners, at(5), settings) == {hana.pk: 0, mallory.pk: 0}
    settled.at[1] = t0 + timedelta(seconds=10)
    assert _mature_and_compare(owners, at(6), settings) == {hana.pk: 0, mallory.pk: 0}
    assert _mature_and_compare(owners, at(15), settings) == {hana.pk: 1_800, mallory.pk: 0}
    # job 2: another attempt charged, the first one lost, then it settles
    hold_capture(
        job_id=2, attempt=2, host_owner=hana, gross_micros=500, fee_micros=50, key="u:2:2:0"
    )
    charges_reverse(job_id=2, attempt=1, key="reverse:2:1")
    settled.at[2], settled.at[3] = t0 + timedelta(seconds=20), t0 + timedelta(seconds=25)
    assert _mature_and_compare(owners, at(22), settings) == {hana.pk: 450, mallory.pk: 0}
    # a clock set back: an earlier cutoff moves nothing (the states are decided again)
    assert _mature_and_compare(owners, at(12), settings) == {hana.pk: 0, mallory.pk: 0}
    assert _mature_and_compare(owners, at(30), settings) == {hana.pk: 0, mallory.pk: 5_400}
    # in all: every settled job's earnings, once
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 0
    assert balance(AccountKind.EARNINGS_PENDING, user=mallory) == 0
    assert _available(owners) == {hana.pk: 2_250, mallory.pk: 9_000}
    assert_invariants()


def test_maturity_by_age_alone_moves_what_the_full_computation_says(
    alice: User, hana: User, settings: Any
) -> None:
    """The ledger alone (no job facts): captures mature by their age, a reversal at once."""
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 3600
    window = timedelta(seconds=3600)
    wallet_credit(user=alice, amount_micros=1_000_000, key="buy", reason="card payment")
    hold_place(user=alice, job_id=1, amount_micros=50_000, key="hold:1")
    for n in range(3):
        hold_capture(
            job_id=1, attempt=1 + n // 2, host_owner=hana, gross_micros=1_000, fee_micros=100,
            key=f"u:1:{n}",
        )  # fmt: skip
    first, second, third = (
        LedgerTransaction.objects.get(key=f"u:1:{n}").created_at for n in range(3)
    )
    assert _mature_and_compare([hana], first + window, settings) == {hana.pk: 900}
    charges_reverse(job_id=1, attempt=1, key="reverse:1:1")
    assert _mature_and_compare([hana], second + window, settings) == {hana.pk: 0}
    assert _mature_and_compare([hana], third + window, settings) == {hana.pk: 0}
    # the first charge matured before its attempt was lost; the reversal took it back out of
    # what was still pending
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == 0
    assert balance(AccountKind.EARNINGS_AVAILABLE, user=hana) == 900
    assert_invariants()


def test_maturity_runs_at_once_while_earnings_commit_mature_each_earning_once(
    alice: User, hana: User, mallory: User, settings: Any
) -> None:
    """Charges keep committing on two owners' hosts while four maturity runs go on and on:
    in the end every earning matured exactly once (never twice, none left)."""
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 0
    wallet_credit(user=alice, amount_micros=1_000_000, key="buy", reason="card payment")
    for job in range(1, 5):
        hold_place(user=alice, job_id=job, amount_micros=100_000, key=f"hold:{job}")
    future = timezone.now() + timedelta(days=1)

    def charge(job: int, owner: User) -> None:
        for n in range(12):
            hold_capture(
                job_id=job, attempt=1, host_owner=owner, gross_micros=1_000, fee_micros=100,
                key=f"u:{job}:{n}",
            )  # fmt: skip

    def mature(run: int) -> int:
        # distinct cutoffs, some repeated (a retried task): keys and replays both
        return sum(
            services.earnings_mature(now=future + timedelta(microseconds=run * 10 + n % 3))
            for n in range(6)
        )

    # when
    results = _threads(
        lambda: charge(1, hana),
        lambda: charge(2, hana),
        lambda: charge(3, mallory),
        lambda: charge(4, mallory),
        lambda: mature(0),
        lambda: mature(1),
        lambda: mature(2),
        lambda: mature(3),
    )
    services.earnings_mature(now=future + timedelta(seconds=1))
    # then: no run failed; all of it available, once
    assert not [result for result in results if isinstance(result, Exception)], results
    for owner in (hana, mallory):
        assert balance(AccountKind.EARNINGS_PENDING, user=owner) == 0
        assert balance(AccountKind.EARNINGS_AVAILABLE, user=owner) == 2 * 12 * 900
    assert_maturity_states()
    assert_invariants()
    assert services.ledger_reconcile(full=True).is_clean


def test_a_maturity_run_visits_only_the_owners_with_something_new(
    alice: User, hana: User, mallory: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: both owners' earnings matured
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 0
    wallet_credit(user=alice, amount_micros=1_000_000, key="buy", reason="card payment")
    _jobs(alice, [hana, mallory], range(1, 3))
    assert services.earnings_mature(now=timezone.now() + timedelta(seconds=1)) == 2
    visited: list[int] = []
    visit = earnings_module._owner_mature

    def counting(owner_id: int, cutoff: datetime) -> LedgerTransaction | None:
        visited.append(owner_id)
        return visit(owner_id, cutoff)

    monkeypatch.setattr(earnings_module, "_owner_mature", counting)
    # when: nothing new
    assert services.earnings_mature(now=timezone.now() + timedelta(seconds=1)) == 0
    # then: nobody is visited
    assert visited == []
    # when: hana earns again
    _jobs(alice, [hana], range(3, 4))
    horizon = _max_posting()
    assert services.earnings_mature(now=timezone.now() + timedelta(seconds=1)) == 1
    # then: only hana is visited, and the next run starts after what this one saw
    assert visited == [hana.pk]
    assert LedgerCheckpoint.objects.get(name=earnings_module.CHECKPOINT).posting_id == horizon
    assert balance(AccountKind.EARNINGS_AVAILABLE, user=hana) == 2 * 3 * 900
    assert balance(AccountKind.EARNINGS_AVAILABLE, user=mallory) == 3 * 900
