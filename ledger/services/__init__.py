"""The ledger's services: the only code that writes ledger tables (docs/ledger.md).

Every money service joins the transaction of its caller, an entry point that opened it with
``config.transactions.durable`` (and reruns it whole after a deadlock); no service opens one. A
service locks the accounts it touches in pk order and is idempotent by ``key``: posting the same
key again returns the first transaction, the same key with other amounts raises ``Conflict``.
All amounts are integers of micro-credits. Other apps import from here, never from the submodules.
"""

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import connection

from config.transactions import durable_call
from ledger.services import captures, holds, restrictions, wallet
from ledger.services.captures import Capture, CaptureOutcome, CaptureResult
from ledger.services.earnings import earnings_mature
from ledger.services.reconcile import (
    INVARIANTS,
    JobFact,
    JobFactsProvider,
    Problem,
    ReconciliationReport,
    ledger_reconcile,
)

P = ParamSpec("P")
T = TypeVar("T")


def _joining(service: Callable[P, T]) -> Callable[P, T]:
    """TRANSITIONAL (issue 10): the money services as other apps see them.

    A caller inside a transaction of its own (an entry point) owns it, and the service joins it.
    A caller outside one (code outside ``ledger/`` not yet moved to ``durable`` entry points)
    still gets a durable transaction of its own, rerun after a deadlock. At integration, once
    every caller is an entry point, this becomes ``return service`` and ``_post``'s assertion
    that a transaction is open is the whole rule.
    """

    @functools.wraps(service)
    def joined(*args: P.args, **kwargs: P.kwargs) -> T:
        if any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
            return service(*args, **kwargs)
        return durable_call(service, *args, **kwargs)

    return joined


charges_reverse = _joining(holds.charges_reverse)
credits_adjust = _joining(wallet.credits_adjust)
hold_capture = _joining(holds.hold_capture)
hold_place = _joining(holds.hold_place)
hold_release = _joining(holds.hold_release)
holds_capture_many = _joining(captures.holds_capture_many)
restriction_lift = _joining(restrictions.restriction_lift)
wallet_credit = _joining(wallet.wallet_credit)

__all__ = [
    "INVARIANTS",
    "Capture",
    "CaptureOutcome",
    "CaptureResult",
    "JobFact",
    "JobFactsProvider",
    "Problem",
    "ReconciliationReport",
    "charges_reverse",
    "credits_adjust",
    "earnings_mature",
    "hold_capture",
    "hold_place",
    "hold_release",
    "holds_capture_many",
    "ledger_reconcile",
    "restriction_lift",
    "wallet_credit",
]
