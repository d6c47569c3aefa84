"""Response shapes of the ledger API (see docs/api.md); the ledger API takes no input."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers

from ledger.models import AccountKind, Posting, TransactionKind
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
        choices=[(AccountKind.WALLET, "Wallet"), (AccountKind.ESCROW, "Escrow")],
        help_text="Which of the user's accounts the line is on.",
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
