"""The wallet endpoints and the staff reconciliation report (docs/api.md)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from ledger.models import Posting
from ledger.selectors import (
    earnings_by_job,
    earnings_summary,
    reconciliation_last,
    wallet_balances,
    wallet_transactions,
)
from ledger.serializers import (
    EarningsJobLineOutput,
    EarningsOutput,
    ReconciliationReportOutput,
    WalletLineOutput,
    WalletOutput,
)
from ledger.services import INVARIANTS


class WalletApi(APIView):
    @extend_schema(
        summary="The user's credits",
        description="`available_micros` can be spent; `held_micros` sits in job holds.",
        responses=WalletOutput,
    )
    def get(self, request: Request) -> Response:
        return Response(WalletOutput(wallet_balances(request_user(request))).data)


class WalletTransactionsApi(ListAPIView[Posting]):
    serializer_class = WalletLineOutput

    @extend_schema(summary="The user's ledger lines, newest first")
    def get(self, request: Request) -> Response:
        return super().get(request)

    def get_queryset(self) -> QuerySet[Posting]:
        return wallet_transactions(request_user(self.request))


class EarningsApi(ListAPIView[Any]):
    """A host owner's earnings: the totals, and per job (paginated, latest first)."""

    serializer_class = EarningsJobLineOutput

    @extend_schema(
        summary="Your earnings as a host owner",
        description="`pending_micros`, `available_micros`, `in_payout_micros`, `paid_micros`, "
        "and the paginated per-job lines in `results` (docs/metering.md).",
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    def get_queryset(self) -> Any:
        return earnings_by_job(request_user(self.request))

    def get_paginated_response(self, data: Any) -> Response:
        response = super().get_paginated_response(data)
        summary = EarningsOutput(earnings_summary(request_user(self.request))).data
        response.data = {**summary, **response.data}
        return response


class ReconciliationReportApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        summary="Ledger invariants and the last reconciliation (staff only)",
        responses=ReconciliationReportOutput,
    )
    def get(self, request: Request) -> Response:
        invariants = [{"name": name, "description": text} for name, text in INVARIANTS.items()]
        body = {"last_run": reconciliation_last(), "invariants": invariants}
        return Response(ReconciliationReportOutput(body).data)
