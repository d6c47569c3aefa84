"""An in-memory stand-in for ledger.services (hold_place / hold_release), per the contract."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from config.errors import InsufficientCredits


class LedgerDouble:
    def __init__(self) -> None:
        self.wallets: defaultdict[int, int] = defaultdict(int)
        self.escrow: defaultdict[int, int] = defaultdict(int)
        self.owners: dict[int, int] = {}
        self.transactions: dict[str, tuple[Any, ...]] = {}

    @property
    def keys(self) -> list[str]:
        return list(self.transactions)

    def fund(self, user: Any, micros: int) -> None:
        self.wallets[user.pk] += micros

    def hold_place(self, *, user: Any, job_id: int, amount_micros: int, key: str) -> None:
        if key in self.transactions:
            return
        if self.wallets[user.pk] < amount_micros:
            raise InsufficientCredits("the wallet can't cover the hold")
        self.wallets[user.pk] -= amount_micros
        self.escrow[job_id] += amount_micros
        self.owners[job_id] = user.pk
        self.transactions[key] = ("hold", job_id, amount_micros)

    def hold_release(self, *, job_id: int, key: str) -> None:
        if key in self.transactions:
            return
        remainder = self.escrow[job_id]
        self.escrow[job_id] = 0
        self.wallets[self.owners[job_id]] += remainder
        self.transactions[key] = ("release", job_id, remainder)
