"""An organisation's wallet, its purchases and its report (docs/pools.md, "The institution
pays"; docs/api.md).

Object-level permissions on every endpoint: a user who is not a member of the organisation
gets 404 (as for one that doesn't exist), a member without the admin role 403 where admins
only are allowed; ``wallet/me/`` is any member's own spending and cap.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from accounts.idempotency import HEADER as IDEMPOTENCY_HEADER
from accounts.idempotency import idempotent
from accounts.models import Membership, MembershipRole
from accounts.selectors import membership_of
from config.api import Pagination, validated
from config.errors import PermissionDenied
from ledger.apis import _csv_cell, _FormatParameterNegotiation, _today
from ledger.models import Posting
from ledger.organisation_reports import (
    MONEY_FIGURES,
    PoolGroup,
    PoolReport,
    PoolRow,
    PoolUsage,
    organisation_report,
)
from ledger.payments.purchases import payment_create
from ledger.payments.selectors import organisation_payments_of, organisation_wallet_lines
from ledger.payments.serializers import AmountInput, PaymentOutput
from ledger.reports import (
    REPORT_DEFAULT_DAYS,
    REPORT_MAX_DAYS,
    billing_period_resolve,
    host_labels_of,
)
from ledger.selectors import member_spend, organisation_balances


def _member(request: Request, organisation_id: int, *, admin: bool) -> Membership:
    """The caller's membership: 404 for a non-member, 403 for a member where admins only may."""
    membership = membership_of(request_user(request), organisation_id)
    if admin and membership.role != MembershipRole.ADMIN:
        raise PermissionDenied(
            "only an admin of this organisation may see or fund its wallet and reports",
            code="organisation_admin_required",
        )
    return membership


# --- the wallet ---------------------------------------------------------------------------------


class OrganisationWalletOutput(serializers.Serializer[Any]):
    organisation = serializers.IntegerField()
    organisation_name = serializers.CharField()
    balance_micros = serializers.IntegerField(help_text="available + held")
    held_micros = serializers.IntegerField(help_text="in the escrows of the pool's open jobs")
    available_micros = serializers.IntegerField(help_text="what new pool jobs can hold")


class OrganisationWalletApi(APIView):
    @extend_schema(
        summary="The organisation's wallet (its admins)",
        responses=OrganisationWalletOutput,
    )
    def get(self, request: Request, organisation_id: int) -> Response:
        membership = _member(request, organisation_id, admin=True)
        body = {
            "organisation": organisation_id,
            "organisation_name": membership.organisation.name,
            **organisation_balances(organisation_id),
        }
        return Response(OrganisationWalletOutput(body).data)


class MemberSpendOutput(serializers.Serializer[Any]):
    organisation = serializers.IntegerField()
    month = serializers.CharField(help_text="the calendar month (UTC), YYYY-MM")
    cap_micros = serializers.IntegerField(
        allow_null=True, help_text="the member's monthly cap; null: none of their own"
    )
    spent_micros = serializers.IntegerField(
        help_text="this month: charges of settled pool jobs + holds of open ones"
    )
    cap_left_micros = serializers.IntegerField(allow_null=True)


class OrganisationWalletMeApi(APIView):
    @extend_schema(
        summary="Your spending from the organisation's wallet this month, and your cap",
        responses=MemberSpendOutput,
    )
    def get(self, request: Request, organisation_id: int) -> Response:
        spend = member_spend(_member(request, organisation_id, admin=False))
        body = {
            "organisation": organisation_id,
            "month": spend.month,
            "cap_micros": spend.cap_micros,
            "spent_micros": spend.spent_micros,
            "cap_left_micros": spend.cap_left_micros,
        }
        return Response(MemberSpendOutput(body).data)


class OrganisationWalletLineOutput(serializers.ModelSerializer[Posting]):
    """One line of the organisation's wallet, with who it was for."""

    created_at = serializers.DateTimeField(source="transaction.created_at")
    kind = serializers.CharField(
        source="transaction.kind",
        help_text="the transaction's kind: `purchase`, `grant`, `hold`, `release`, `refund` …",
    )
    amount_micros = serializers.IntegerField(help_text="added to the wallet: negative when spent")
    job_id = serializers.IntegerField(source="transaction.job_id", allow_null=True)
    memo = serializers.CharField(source="transaction.memo")
    transaction_id = serializers.IntegerField()
    member = serializers.IntegerField(
        source="member_id", allow_null=True, help_text="hold, release: the member who spent"
    )
    member_username = serializers.CharField(allow_null=True)
    by_username = serializers.CharField(
        allow_null=True,
        help_text="purchase: the admin who bought; grant: the staff member who granted",
    )

    class Meta:
        model = Posting
        fields = [
            "id",
            "created_at",
            "kind",
            "amount_micros",
            "job_id",
            "memo",
            "transaction_id",
            "member",
            "member_username",
            "by_username",
        ]
        read_only_fields = fields


class OrganisationWalletTransactionsApi(ListAPIView[Posting]):
    serializer_class = OrganisationWalletLineOutput

    @extend_schema(summary="The organisation wallet's lines, newest first (its admins)")
    def get(self, request: Request, organisation_id: int) -> Response:
        return super().get(request, organisation_id)

    def get_queryset(self) -> QuerySet[Posting]:
        if getattr(self, "swagger_fake_view", False):
            return Posting.objects.none()
        organisation_id = self.kwargs["organisation_id"]
        _member(self.request, organisation_id, admin=True)
        return organisation_wallet_lines(organisation_id)


class OrganisationPaymentListOutput(PaymentOutput):
    organisation = serializers.IntegerField(source="organisation_id")
    bought_by = serializers.CharField(source="user.username")

    class Meta(PaymentOutput.Meta):
        fields = [*PaymentOutput.Meta.fields, "organisation", "bought_by"]
        read_only_fields = fields


class OrganisationPaymentOutput(PaymentOutput):
    organisation = serializers.IntegerField(source="organisation_id")
    client_secret = serializers.CharField(allow_null=True)
    publishable_key = serializers.CharField(allow_null=True)

    class Meta(PaymentOutput.Meta):
        fields = [*PaymentOutput.Meta.fields, "organisation", "client_secret", "publishable_key"]
        read_only_fields = fields


class OrganisationPaymentsApi(APIView):
    @extend_schema(
        summary="The organisation's purchases, newest first (its admins)",
        responses=OrganisationPaymentOutput(many=True),
    )
    def get(self, request: Request, organisation_id: int) -> Response:
        _member(request, organisation_id, admin=True)
        paginator = Pagination()
        page = paginator.paginate_queryset(organisation_payments_of(organisation_id), request, self)
        return paginator.get_paginated_response(OrganisationPaymentListOutput(page, many=True).data)

    @extend_schema(
        summary="Buy credits for the organisation's wallet (its admins)",
        description="As `POST /api/v1/payments/`, credited to the organisation's wallet: Stripe "
        "returns the PaymentIntent's `client_secret` and the credits arrive with the verified "
        "webhook; the demo provider credits at once. `Idempotency-Key` honoured.",
        request=AmountInput,
        responses={201: OrganisationPaymentOutput},
    )
    @idempotent()
    def post(self, request: Request, organisation_id: int) -> Response:
        membership = _member(request, organisation_id, admin=True)
        data = validated(AmountInput, request)
        result = payment_create(
            user=request_user(request),
            amount_micros=data["amount_micros"],
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER, "").strip(),
            organisation=membership.organisation,
        )
        body = {
            **PaymentOutput(result.payment).data,
            "organisation": organisation_id,
            "client_secret": result.checkout.client_secret,
            "publishable_key": result.checkout.publishable_key,
        }
        return Response(body, status=status.HTTP_201_CREATED)


# --- the report ---------------------------------------------------------------------------------


class OrganisationReportQuery(serializers.Serializer[Mapping[str, object]]):
    to = serializers.DateField(required=False)
    group_by = serializers.ChoiceField(
        choices=[group.value for group in PoolGroup], default=PoolGroup.MEMBER.value
    )
    format = serializers.ChoiceField(choices=["json", "csv"], default="json")

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        return {"from": serializers.DateField(required=False), **super().get_fields()}


_KEY_COLUMNS = {
    PoolGroup.MEMBER: ("member", "username"),
    PoolGroup.HOST: ("host", "host_name", "owner", "owner_username"),
}
_USAGE_COLUMNS = ("jobs", "cpu_seconds", "gpu_seconds", "wall_seconds")


def _seconds(ms: int) -> str:
    """Milliseconds as an exact decimal string of seconds."""
    value = Decimal(ms) / 1000
    return format(value.normalize(), "f") if value else "0"


def _usage_out(usage: PoolUsage) -> dict[str, Any]:
    return {
        "jobs": usage.jobs,
        "cpu_seconds": _seconds(usage.cpu_ms),
        "gpu_seconds": _seconds(usage.gpu_ms),
        "wall_seconds": _seconds(usage.wall_ms),
    }


def _row_out(row: PoolRow, group: PoolGroup, hosts: Mapping[int, Any]) -> dict[str, Any]:
    if group is PoolGroup.MEMBER:
        keys: dict[str, Any] = {"member": row.key, "username": row.username}
    else:
        label = hosts.get(row.key) if row.key is not None else None
        keys = {
            "host": row.key,
            "host_name": label.name if label else None,
            "owner": label.owner_id if label else None,
            "owner_username": label.owner_username if label else None,
        }
    return {**keys, **_usage_out(row.usage), **row.money}


def _report_out(report: PoolReport) -> dict[str, Any]:
    hosts = {}
    if report.group_by is PoolGroup.HOST:
        hosts = dict(host_labels_of({row.key for row in report.rows if row.key is not None}))
    return {
        "organisation": report.organisation_id,
        "from": report.period.first,
        "to": report.period.last,
        "group_by": report.group_by.value,
        "rows": [_row_out(row, report.group_by, hosts) for row in report.rows],
        "totals": {**_usage_out(report.totals_usage), **report.totals_money},
    }


def _report_csv(body: Mapping[str, Any], group: PoolGroup) -> HttpResponse:
    columns = (*_KEY_COLUMNS[group], *_USAGE_COLUMNS, *MONEY_FIGURES)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in body["rows"]:
        writer.writerow([_csv_cell(row[column]) for column in columns])
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    name = (
        f"communipute-organisation-{body['organisation']}-by-{group.value}-"
        f"{body['from']}-{body['to']}.csv"
    )
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


class OrganisationReportApi(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _FormatParameterNegotiation

    @extend_schema(
        summary="The organisation's pool jobs per member or host (its admins)",
        description=(
            "Jobs, usage (CPU, GPU and wall seconds, zero-rate runs included) and what was "
            "charged, the platform fee, the hosts' earnings and the reversals of lost work, "
            f"for whole UTC days from `from` to `to` (default the last {REPORT_DEFAULT_DAYS} "
            f"days, at most {REPORT_MAX_DAYS}); `format=csv` downloads the rows. "
            'docs/reports.md, "An organisation\'s report".'
        ),
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE),
            OpenApiParameter("to", OpenApiTypes.DATE),
            OpenApiParameter(
                "group_by", str, enum=[g.value for g in PoolGroup], default=PoolGroup.MEMBER.value
            ),
            OpenApiParameter("format", str, enum=["json", "csv"], default="json"),
        ],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="the rows"),
        },
    )
    def get(self, request: Request, organisation_id: int) -> HttpResponse:
        _member(request, organisation_id, admin=True)
        query = OrganisationReportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        period = billing_period_resolve(
            first=params.get("from"), last=params.get("to"), today=_today()
        )
        group = PoolGroup(params["group_by"])
        report = organisation_report(organisation_id=organisation_id, period=period, group_by=group)
        body = _report_out(report)
        if params["format"] == "csv":
            return _report_csv(body, group)
        return Response(body)
