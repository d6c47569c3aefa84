"""The wallet endpoints and the staff reconciliation report (docs/api.md)."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from ledger.models import Posting
from ledger.selectors import reconciliation_last, wallet_balances, wallet_transactions
from ledger.serializers import (
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
