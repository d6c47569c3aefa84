"""``manage.py ledger_reconcile [--full]``: check the ledger now (docs/operations.md,
"Reconciliation").

The same run the beat task makes — incremental unless a full one is due — or with ``--full``
every posting, transaction and account from scratch (and the kept sums rebuilt). Prints the
run's figures and every problem; exits 1 when the run is not clean, so a script can alert.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.services import ledger_reconcile


class Command(BaseCommand):
    help = "Check every ledger invariant now (incremental unless --full) and record the run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--full",
            action="store_true",
            help="check every posting from scratch and rebuild the kept sums",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = ledger_reconcile(full=options["full"])
        took = (report.finished_at - report.started_at).total_seconds()
        why = f" ({report.reason})" if report.reason else ""
        self.stdout.write(
            f"reconciliation run {report.run_id}: {report.mode}{why}, {took:.3f} s, "
            f"{report.accounts_checked} accounts, {report.transactions_checked} transactions, "
            f"{report.postings_checked} postings checked, through posting "
            f"{report.through_posting_id}"
        )
        for problem in report.problems:
            self.stdout.write(f"{problem.invariant}: {problem.message}")
        if not report.is_clean:
            raise CommandError(f"not clean: {len(report.problems)} problem(s)")
        self.stdout.write("clean")
