"""Periodic ledger work (scheduled in settings.CELERY_BEAT_SCHEDULE). Safe to retry."""

from __future__ import annotations

import logging
from typing import TypedDict

from celery import shared_task

from ledger.services import earnings_mature, ledger_reconcile

logger = logging.getLogger(__name__)


class ReconcileResult(TypedDict):
    run_id: int
    is_clean: bool
    problem_count: int


@shared_task
def ledger_reconcile_task() -> ReconcileResult:
    """Check every ledger invariant; the result is stored and shown to staff."""
    report = ledger_reconcile()
    if not report.is_clean:
        logger.error(
            "ledger reconciliation %s found %d problems: %s",
            report.run_id,
            len(report.problems),
            "; ".join(problem.message for problem in report.problems[:10]),
        )
    return {
        "run_id": report.run_id,
        "is_clean": report.is_clean,
        "problem_count": len(report.problems),
    }


@shared_task
def earnings_mature_task() -> int:
    """Make host earnings older than the dispute window available for payout."""
    return earnings_mature()
