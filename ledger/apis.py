"""The wallet endpoints and the staff reconciliation report (API.md)."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from ledger.models import Posting
from ledger.selectors import reconciliation_last, wallet_balances, wallet_transactions
from ledger.serializers import (
    ReconciliationReportSerializer,
    WalletLineSerializer,
    WalletSerializer,
)
from ledger.services import INVARIANTS


def _user(request: Request) -> User:
    user = request.user
    assert isinstance(user, User), "IsAuthenticated lets only real users in"
    return user


class WalletApi(APIView):
    @extend_schema(
        operation_id="wallet_retrieve",
        summary="The user's credits",
        description="`available_micros` can be spent; `held_micros` sits in job holds.",
        responses=WalletSerializer,
        tags=["wallet"],
    )
    def get(self, request: Request) -> Response:
        return Response(WalletSerializer(wallet_balances(_user(request))).data)


class WalletTransactionsApi(ListAPIView[Posting]):
    serializer_class = WalletLineSerializer

    @extend_schema(
        operation_id="wallet_transactions_list",
        summary="The user's ledger lines, newest first",
        tags=["wallet"],
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    def get_queryset(self) -> QuerySet[Posting]:
        return wallet_transactions(_user(self.request))


class ReconciliationReportApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="admin_reports_reconciliation_retrieve",
        summary="Ledger invariants and the last reconciliation (staff only)",
        responses=ReconciliationReportSerializer,
        tags=["admin"],
    )
    def get(self, request: Request) -> Response:
        invariants = [{"name": name, "description": text} for name, text in INVARIANTS.items()]
        body = {"last_run": reconciliation_last(), "invariants": invariants}
        return Response(ReconciliationReportSerializer(body).data)
