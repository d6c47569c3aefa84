"""The ledger's services: the only code that writes ledger tables (docs/ledger.md).

Every money service runs in ``transaction.atomic(durable=True)``, locks the accounts it touches
in pk order, and is idempotent by ``key``: posting the same key again returns the first
transaction, the same key with other amounts raises ``Conflict``. All amounts are integers of
micro-credits. Other apps import from here, never from the submodules.
"""

from ledger.services.earnings import earnings_mature
from ledger.services.holds import charges_reverse, hold_capture, hold_place, hold_release
from ledger.services.payments import (
    payment_credit,
    payment_dispute_lose,
    payment_refund_sync,
    payout_complete,
    payout_fail,
    payout_request,
)
from ledger.services.reconcile import (
    INVARIANTS,
    JobFact,
    JobFactsProvider,
    Problem,
    ReconciliationReport,
    ledger_reconcile,
)
from ledger.services.wallet import credits_adjust, wallet_credit

__all__ = [
    "INVARIANTS",
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
    "ledger_reconcile",
    "payment_credit",
    "payment_dispute_lose",
    "payment_refund_sync",
    "payout_complete",
    "payout_fail",
    "payout_request",
    "wallet_credit",
]
