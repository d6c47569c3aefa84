"""The real ledger (ledger.services) behind the small interface the jobs tests use."""

from __future__ import annotations

from itertools import count
from typing import Any

from config.transactions import durable_call
from ledger.models import AccountKind, LedgerTransaction
from ledger.services import organisation_credit, wallet_credit
from tests.ledger.helpers import assert_invariants, balance

_funding = count(1)


class _Balances:
    def __init__(self, kind: AccountKind, by: str) -> None:
        self.kind, self.by = kind, by

    def __getitem__(self, owner: int) -> int:
        if self.by == "user":
            return balance(self.kind, user=_user(owner))
        return balance(self.kind, job_id=owner)


def _user(pk: int) -> Any:
    from accounts.models import User

    return User.objects.get(pk=pk)


class RealLedger:
    wallets = _Balances(AccountKind.WALLET, "user")
    escrow = _Balances(AccountKind.ESCROW, "job")

    def fund(self, user: Any, micros: int) -> None:
        durable_call(
            wallet_credit,
            user=user,
            amount_micros=micros,
            key=f"test-funds:{next(_funding)}",
            reason="test",
        )

    def fund_organisation(self, organisation: Any, micros: int) -> None:
        """A staff grant into the organisation's wallet: what its members' pool jobs spend
        (docs/pools.md, "The institution pays")."""
        from accounts.models import User

        staff, _ = User.objects.get_or_create(
            username="ledger-staff",
            defaults={"email": "ledger-staff@example.com", "is_staff": True},
        )
        durable_call(
            organisation_credit,
            organisation=organisation,
            amount_micros=micros,
            key=f"test-funds:{next(_funding)}",
            reason="test",
            staff_user=staff,
        )

    @property
    def keys(self) -> list[str]:
        """Keys of the ledger transactions jobs made (funding left out)."""
        return list(
            LedgerTransaction.objects.filter(key__startswith="job-")
            .order_by("pk")
            .values_list("key", flat=True)
        )

    def check(self) -> None:
        assert_invariants()
