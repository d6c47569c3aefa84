"""Shapes of the ledger API (see docs/api.md): responses, and the billing report's query."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from ledger.models import AccountKind, Posting, TransactionKind
from ledger.payments.selectors import EarningsSummary
from ledger.reports import REPORT_DEFAULT_DAYS, REPORT_MAX_DAYS, BillingGroup
from ledger.selectors import WalletBalances


class WalletOutput(serializers.Serializer[WalletBalances]):
    balance_micros = serializers.IntegerField(
        help_text="Everything the user owns: available + held."
    )
    held_micros = serializers.IntegerField(
        help_text="Held in the escrows of the user's jobs; not spendable."
    )
    available_micros = serializers.IntegerField(help_text="In the wallet: what a new job can hold.")


class WalletLineOutput(serializers.ModelSerializer[Posting]):
    """One ledger line of the user: a posting on their wallet or one of their job escrows."""

    created_at = serializers.DateTimeField(source="transaction.created_at")
    kind = serializers.ChoiceField(
        source="transaction.kind", choices=TransactionKind.choices, help_text="What happened."
    )
    account = serializers.ChoiceField(
        source="account.kind",
        choices=[
            (AccountKind.WALLET, "Wallet"),
            (AccountKind.ESCROW, "Escrow"),
            (AccountKind.EARNINGS_PENDING, "Earnings (pending)"),
            (AccountKind.EARNINGS_AVAILABLE, "Earnings (available)"),
        ],
        help_text="Which of the user's accounts the line is on (earnings: only with ?job= or "
        "?transaction=).",
    )
    amount_micros = serializers.IntegerField(
        help_text="Added to that account: negative when credits left it."
    )
    job_id = serializers.IntegerField(source="transaction.job_id", allow_null=True)
    memo = serializers.CharField(source="transaction.memo")
    transaction_id = serializers.IntegerField()

    class Meta:
        model = Posting
        fields = [
            "id",
            "created_at",
            "kind",
            "account",
            "amount_micros",
            "job_id",
            "memo",
            "transaction_id",
        ]
        read_only_fields = fields


class WalletHistoryLineOutput(serializers.Serializer[Any]):
    """One line of the wallet history (ledger.history): a job, a host's earnings from a job,
    or one transaction (a purchase, grant, adjustment, refund, payout)."""

    line = serializers.CharField(
        help_text="`job`, `earnings` (a host owner's, per job), or the transaction's kind: "
        "`purchase`, `grant`, `adjustment`, `refund`, `payout`, `payout_reversal` …"
    )
    job_id = serializers.IntegerField(allow_null=True)
    job_name = serializers.CharField(allow_null=True)
    transaction_id = serializers.IntegerField(
        allow_null=True, help_text="a line of one transaction; null for job and earnings lines"
    )
    memo = serializers.CharField(allow_blank=True)
    started_at = serializers.DateTimeField(help_text="the line's first entry")
    at = serializers.DateTimeField(help_text="the line's latest entry")
    amount_micros = serializers.IntegerField(
        help_text="What the line added to the wallet (negative: spent); for an earnings line "
        "or a payout, to the host's earnings."
    )
    hold_micros = serializers.IntegerField(help_text="a job line: taken into the job's hold")
    charged_micros = serializers.IntegerField(help_text="a job line: charged from the hold")
    reversed_micros = serializers.IntegerField(help_text="a job line: charges given back")
    refund_micros = serializers.IntegerField(help_text="a job line: the hold's rest returned")
    held_micros = serializers.IntegerField(help_text="a job line: still held")
    cost_micros = serializers.IntegerField(help_text="a job line: charged - reversed")
    entry_count = serializers.IntegerField(
        help_text="ledger entries behind the line: `wallet/transactions/?job=` or "
        "`?transaction=` lists them"
    )


class ProblemOutput(serializers.Serializer[Mapping[str, object]]):
    invariant = serializers.CharField()
    message = serializers.CharField()
    account_id = serializers.IntegerField(allow_null=True)
    transaction_id = serializers.IntegerField(allow_null=True)
    job_id = serializers.IntegerField(allow_null=True)
    expected_micros = serializers.IntegerField(allow_null=True)
    actual_micros = serializers.IntegerField(allow_null=True)


class ReconciliationRunOutput(serializers.Serializer[Mapping[str, object]]):
    id = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField()
    is_clean = serializers.BooleanField()
    checks = serializers.ListField(child=serializers.CharField())
    accounts_checked = serializers.IntegerField()
    transactions_checked = serializers.IntegerField()
    problem_count = serializers.IntegerField()
    problems = ProblemOutput(many=True)


class InvariantOutput(serializers.Serializer[Mapping[str, str]]):
    name = serializers.CharField()
    description = serializers.CharField()


class ReconciliationReportOutput(serializers.Serializer[Mapping[str, object]]):
    last_run = ReconciliationRunOutput(
        allow_null=True, help_text="The most recent reconciliation; null before the first."
    )
    invariants = InvariantOutput(many=True, help_text="What every run checks.")


class EarningsJobLineOutput(serializers.Serializer[Mapping[str, Any]]):
    """A host owner's earnings from one job (the attempts that ran on their hosts)."""

    job_id = serializers.IntegerField()
    gross_micros = serializers.IntegerField(help_text="What the job was charged for them.")
    fee_micros = serializers.IntegerField(help_text="Of the gross: the platform fee.")
    net_micros = serializers.SerializerMethodField(help_text="gross - fee: what they earned.")
    reversed_micros = serializers.SerializerMethodField(
        help_text="Earnings taken back (a lost attempt's charges reversed)."
    )
    earned_micros = serializers.SerializerMethodField(help_text="net - reversed.")
    last_charged_at = serializers.DateTimeField()

    def get_net_micros(self, line: Mapping[str, Any]) -> int:
        return int(line["gross_micros"]) - int(line["fee_micros"])

    def get_reversed_micros(self, line: Mapping[str, Any]) -> int:
        return int(line["reversed_gross_micros"]) - int(line["reversed_fee_micros"])

    def get_earned_micros(self, line: Mapping[str, Any]) -> int:
        return self.get_net_micros(line) - self.get_reversed_micros(line)


class EarningsOutput(serializers.Serializer[EarningsSummary]):
    pending_micros = serializers.IntegerField(
        help_text="Inside the dispute window (EARNINGS_DISPUTE_WINDOW_SECONDS): not payable yet."
    )
    available_micros = serializers.IntegerField(help_text="Payable now.")
    in_payout_micros = serializers.IntegerField(help_text="Requested payouts not transferred yet.")
    paid_micros = serializers.IntegerField(help_text="Transferred to your connected account.")


class BillingReportQuery(serializers.Serializer[Mapping[str, object]]):
    """The report's query parameters (``from`` is a Python keyword, so it is added in
    ``get_fields``)."""

    to = serializers.DateField(
        required=False,
        help_text="Last day of the period, included (YYYY-MM-DD, UTC). Default: today.",
    )
    group_by = serializers.ChoiceField(
        choices=[group.value for group in BillingGroup], default=BillingGroup.DAY.value
    )
    format = serializers.ChoiceField(choices=["json", "csv"], default="json")

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        first = serializers.DateField(
            required=False,
            help_text=(
                "First day of the period, included (YYYY-MM-DD, UTC). Default: "
                f"{REPORT_DEFAULT_DAYS - 1} days before `to`; at most {REPORT_MAX_DAYS} days."
            ),
        )
        return {"from": first, **super().get_fields()}


class BillingFiguresOutput(serializers.Serializer[Mapping[str, object]]):
    """Integers of micro-credits; docs/reports.md says what each one counts."""

    credits_bought_micros = serializers.IntegerField(
        help_text="Credits bought: stripe_clearing -> wallet."
    )
    grants_micros = serializers.IntegerField(
        help_text="Staff grants and adjustments, net (an adjustment may take credits back)."
    )
    gross_charges_micros = serializers.IntegerField(
        help_text="Usage charged from job holds, before reversals."
    )
    platform_fees_micros = serializers.IntegerField(
        help_text="The platform's fees (revenue), net of reversed charges."
    )
    host_earnings_micros = serializers.IntegerField(
        help_text="What hosts earned: gross charges - reversals - platform fees."
    )
    reversals_micros = serializers.IntegerField(
        help_text="Gross charges undone (lost attempts): returned to the job's hold."
    )
    refunds_micros = serializers.IntegerField(
        help_text="Purchases taken back by refunds and lost disputes."
    )
    payouts_micros = serializers.IntegerField(help_text="Payouts whose transfer went through.")


class BillingRowOutput(BillingFiguresOutput):
    """One group. Only the key fields of the report's ``group_by`` are set, the others null."""

    day = serializers.DateField(allow_null=True, help_text="group_by=day: the UTC day.")
    host = serializers.IntegerField(
        allow_null=True,
        help_text="group_by=host and top_hosts: the host id; null for charges without a host.",
    )
    host_name = serializers.CharField(allow_null=True)
    owner = serializers.IntegerField(allow_null=True, help_text="The host's owner (user id).")
    owner_username = serializers.CharField(allow_null=True)
    user = serializers.IntegerField(
        allow_null=True,
        help_text=(
            "group_by=user and top_renters: the user id (the renter for charges, the buyer for "
            "purchases, grants and refunds, the host owner for payouts)."
        ),
    )
    username = serializers.CharField(allow_null=True)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        figures = BillingFiguresOutput._declared_fields
        # The key fields first, then the figures.
        return {
            **{name: field for name, field in fields.items() if name not in figures},
            **{name: field for name, field in fields.items() if name in figures},
        }


class BillingReportOutput(serializers.Serializer[Mapping[str, object]]):
    to = serializers.DateField(help_text="Last day of the period, included.")
    group_by = serializers.ChoiceField(choices=[group.value for group in BillingGroup])
    rows = BillingRowOutput(
        many=True,
        help_text="Per day (every day of the period, oldest first), host or user (by id).",
    )
    totals = BillingFiguresOutput(help_text="The whole period, every figure.")
    top_hosts = BillingRowOutput(many=True, help_text="The 10 hosts with the most gross charges.")
    top_renters = BillingRowOutput(
        many=True, help_text="The 10 renters with the most gross charges."
    )

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        first = serializers.DateField(help_text="First day of the period, included.")
        return {"from": first, **super().get_fields()}
