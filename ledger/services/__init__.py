"""The ledger's services: the only code that writes ledger tables (docs/ledger.md).

Every money service joins the transaction of its caller, an entry point that opened it with
``config.transactions.durable`` (and reruns it whole after a deadlock); no service opens one. A
service locks the accounts it touches in pk order and is idempotent by ``key``: posting the same
key again returns the first transaction, the same key with other amounts raises ``Conflict``.
All amounts are integers of micro-credits. Other apps import from here, never from the submodules.
"""

from ledger.services.captures import Capture, CaptureOutcome, CaptureResult, holds_capture_many
from ledger.services.earnings import earnings_mature
from ledger.services.holds import charges_reverse, hold_capture, hold_place, hold_release
from ledger.services.organisation import (
    member_lock,
    organisation_credit,
    organisation_hold_place,
)
from ledger.services.reconcile import (
    INVARIANTS,
    JobFact,
    JobFactsProvider,
    Problem,
    ReconciliationReport,
    ledger_reconcile,
)
from ledger.services.restrictions import restriction_lift
from ledger.services.wallet import credits_adjust, wallet_credit

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
    "member_lock",
    "organisation_credit",
    "organisation_hold_place",
    "restriction_lift",
    "wallet_credit",
]
