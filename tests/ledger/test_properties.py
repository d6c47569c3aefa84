"""Random sequences of ledger operations against a plain in-memory model of the money.

After every step each balance in the database must equal the model's; refused operations must
be refused for the model's reason and change nothing.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from accounts.models import User
from config.errors import Conflict, InsufficientCredits, NotFound, ServiceError
from ledger.models import AccountKind
from ledger.services import (
    charges_reverse,
    credits_adjust,
    earnings_mature,
    hold_capture,
    hold_place,
    hold_release,
    wallet_credit,
)
from tests.ledger.helpers import assert_invariants, balance, ledger_state

_machines = itertools.count()
_jobs = itertools.count(1_000)

# Credits come in bigger amounts than holds, and holds than charges, so that most sequences get
# far enough (bought, held, charged, matured, reversed) to exercise every path; the overdrafts
# still happen often enough.
purchases = st.integers(min_value=1, max_value=60_000)
holds = st.integers(min_value=1, max_value=20_000)
charges = st.integers(min_value=1, max_value=6_000)


@dataclass(frozen=True)
class Capture:
    owner: int
    gross: int
    fee: int


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        n = next(_machines)
        self.prefix = f"m{n}"
        self.renters = [_user(f"renter{n}a"), _user(f"renter{n}b")]
        self.owners = [_user(f"owner{n}a"), _user(f"owner{n}b")]
        self.staff = _user(f"staff{n}", is_staff=True)
        self.jobs = [next(_jobs) for _ in range(2)]
        self.keys = itertools.count()
        self.platform_start = {kind: balance(kind) for kind in _PLATFORM}
        self.wallet: defaultdict[int, int] = defaultdict(int)
        self.escrow: dict[int, int] = {}
        self.escrow_owner: dict[int, int] = {}
        self.pending: defaultdict[int, int] = defaultdict(int)
        self.available: defaultdict[int, int] = defaultdict(int)
        self.platform: defaultdict[str, int] = defaultdict(int)
        self.captures: defaultdict[tuple[int, int], list[Capture]] = defaultdict(list)
        self.last: tuple[str, dict[str, Any]] | None = None

    def _key(self) -> str:
        return f"{self.prefix}:{next(self.keys)}"

    def _call(self, name: str, **kwargs: Any) -> Any:
        result = _SERVICES[name](**kwargs)
        self.last = (name, kwargs)
        return result

    def _refused(self, error: type[ServiceError], code: str, name: str, **kwargs: Any) -> None:
        before = ledger_state()
        with pytest.raises(error) as refused:
            self._call(name, **kwargs)
        assert refused.value.code == code
        assert ledger_state() == before

    @initialize(amounts=st.lists(holds, min_size=2, max_size=2))
    def open_two_jobs(self, amounts: list[int]) -> None:
        """Start where the interesting paths are: each renter funded, with one job held."""
        for renter, job_id, amount in zip(self.renters, self.jobs, amounts, strict=True):
            self._call(
                "wallet_credit", user=renter, amount_micros=amount, key=self._key(), reason="p"
            )
            self._call(
                "hold_place", user=renter, job_id=job_id, amount_micros=amount, key=self._key()
            )
            self.platform[AccountKind.STRIPE_CLEARING] -= amount
            self.escrow[job_id] = amount
            self.escrow_owner[job_id] = renter.pk

    @rule(who=st.integers(0, 1), amount=purchases)
    def credit(self, who: int, amount: int) -> None:
        user = self.renters[who]
        self._call(
            "wallet_credit", user=user, amount_micros=amount, key=self._key(), reason="purchase"
        )
        self.wallet[user.pk] += amount
        self.platform[AccountKind.STRIPE_CLEARING] -= amount

    @rule(who=st.integers(0, 1), amount=st.integers(-5_000, 5_000).filter(bool))
    def adjust(self, who: int, amount: int) -> None:
        user = self.renters[who]
        kwargs = {"user": user, "amount_micros": amount, "reason": "fix", "staff_user": self.staff}
        if self.wallet[user.pk] + amount < 0:
            self._refused(
                InsufficientCredits, "insufficient_credits", "credits_adjust", key="x", **kwargs
            )
            return
        self._call("credits_adjust", key=self._key(), **kwargs)
        self.wallet[user.pk] += amount
        self.platform[AccountKind.GRANTS] -= amount

    @rule(who=st.integers(0, 1), job=st.integers(0, 1), amount=holds)
    def hold(self, who: int, job: int, amount: int) -> None:
        user, job_id = self.renters[who], self.jobs[job]
        kwargs = {"user": user, "job_id": job_id, "amount_micros": amount, "key": self._key()}
        if self.escrow_owner.get(job_id, user.pk) != user.pk:
            self._refused(Conflict, "hold_owner_mismatch", "hold_place", **kwargs)
        elif self.wallet[user.pk] < amount:
            self._refused(InsufficientCredits, "insufficient_credits", "hold_place", **kwargs)
        else:
            self._call("hold_place", **kwargs)
            self.wallet[user.pk] -= amount
            self.escrow[job_id] = self.escrow.get(job_id, 0) + amount
            self.escrow_owner[job_id] = user.pk

    @rule(
        job=st.integers(0, 1),
        attempt=st.integers(1, 2),
        owner=st.integers(0, 1),
        gross=charges,
        fee_percent=st.integers(0, 100),
    )
    def capture(self, job: int, attempt: int, owner: int, gross: int, fee_percent: int) -> None:
        job_id, owner_id = self.jobs[job], self.owners[owner].pk
        fee = gross * fee_percent // 100
        kwargs = {
            "job_id": job_id,
            "attempt": attempt,
            "host_owner": owner_id,
            "gross_micros": gross,
            "fee_micros": fee,
            "key": self._key(),
        }
        if job_id not in self.escrow:
            self._refused(NotFound, "hold_not_found", "hold_capture", **kwargs)
        elif self.escrow[job_id] < gross:
            self._refused(InsufficientCredits, "hold_exceeded", "hold_capture", **kwargs)
        else:
            self._call("hold_capture", **kwargs)
            self.escrow[job_id] -= gross
            self.pending[owner_id] += gross - fee
            self.platform[AccountKind.REVENUE] += fee
            self.captures[job_id, attempt].append(Capture(owner_id, gross, fee))

    @rule(job=st.integers(0, 1))
    def release(self, job: int) -> None:
        job_id = self.jobs[job]
        if job_id not in self.escrow:
            self._refused(NotFound, "hold_not_found", "hold_release", job_id=job_id, key="x")
            return
        self._call("hold_release", job_id=job_id, key=self._key())
        self.wallet[self.escrow_owner[job_id]] += self.escrow[job_id]
        self.escrow[job_id] = 0

    @rule(job=st.integers(0, 1), attempt=st.integers(1, 2))
    def reverse(self, job: int, attempt: int) -> None:
        job_id = self.jobs[job]
        kwargs = {"job_id": job_id, "attempt": attempt}
        if job_id not in self.escrow:
            self._refused(NotFound, "hold_not_found", "charges_reverse", key="x", **kwargs)
            return
        owed: defaultdict[int, int] = defaultdict(int)
        for charge in self.captures.get((job_id, attempt), []):
            owed[charge.owner] += charge.gross - charge.fee
        if any(amount > self.pending[owner_id] for owner_id, amount in owed.items()):
            # A reversal takes the host's share from pending earnings only (issue 11).
            self._refused(
                InsufficientCredits,
                "insufficient_earnings",
                "charges_reverse",
                key=self._key(),
                **kwargs,
            )
            return
        self._call("charges_reverse", key=self._key(), **kwargs)
        for charge in self.captures.pop((job_id, attempt), []):
            self.escrow[job_id] += charge.gross
            self.platform[AccountKind.REVENUE] -= charge.fee
        for owner_id, amount in owed.items():
            self.pending[owner_id] -= amount

    @rule()
    def mature(self) -> None:
        # The test runs with a dispute window of zero: all pending earnings are due.
        earnings_mature()
        for owner_id, amount in self.pending.items():
            self.available[owner_id] += amount
            self.pending[owner_id] = 0

    @rule(extra=st.integers(1, 3))
    def reuse_the_last_key(self, extra: int) -> None:
        if self.last is None:
            return
        name, kwargs = self.last
        # The same call again: nothing changes.
        before = ledger_state()
        self._call(name, **kwargs)
        assert ledger_state() == before
        # The same key with another amount: a conflict, and nothing changes.
        amount_field = next((f for f in ("amount_micros", "gross_micros") if f in kwargs), None)
        if amount_field is not None and kwargs[amount_field] > 0:
            other = {**kwargs, amount_field: kwargs[amount_field] + extra}
            self._refused(Conflict, "transaction_key_reused", name, **other)

    @invariant()
    def balances_match_the_model(self) -> None:
        for user in self.renters:
            assert balance(AccountKind.WALLET, user=user) == self.wallet[user.pk]
        for job_id in self.jobs:
            assert balance(AccountKind.ESCROW, job_id=job_id) == self.escrow.get(job_id, 0)
        for owner in self.owners:
            assert balance(AccountKind.EARNINGS_PENDING, user=owner) == self.pending[owner.pk]
            assert balance(AccountKind.EARNINGS_AVAILABLE, user=owner) == self.available[owner.pk]
        for kind in _PLATFORM:
            assert balance(kind) - self.platform_start[kind] == self.platform[kind]

    def teardown(self) -> None:
        assert_invariants()


_PLATFORM = [
    AccountKind.STRIPE_CLEARING,
    AccountKind.GRANTS,
    AccountKind.REVENUE,
    AccountKind.PLATFORM_LOSS,
]
_SERVICES: dict[str, Any] = {
    "wallet_credit": wallet_credit,
    "credits_adjust": credits_adjust,
    "hold_place": hold_place,
    "hold_capture": hold_capture,
    "hold_release": hold_release,
    "charges_reverse": charges_reverse,
}


def _user(username: str, **extra: Any) -> User:
    return User.objects.create_user(username=username, email=f"{username}@example.com", **extra)


@pytest.mark.django_db
def test_random_operation_sequences_match_the_model(no_dispute_window: None) -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=hypothesis_settings(
            max_examples=35,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.fixture
def no_dispute_window(settings: Any) -> None:
    settings.EARNINGS_DISPUTE_WINDOW_SECONDS = 0
