"""The wallet endpoints and the staff reports: reconciliation and billing (docs/api.md)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from ledger.history import job_names_of, wallet_history
from ledger.models import Posting
from ledger.payments.selectors import earnings_summary
from ledger.reports import (
    FIGURES,
    REPORT_DEFAULT_DAYS,
    REPORT_MAX_DAYS,
    BillingGroup,
    BillingReport,
    BillingRow,
    HostLabel,
    billing_period_resolve,
    billing_report,
    host_labels_of,
)
from ledger.selectors import (
    earnings_by_job,
    reconciliation_last,
    wallet_balances,
    wallet_transactions,
)
from ledger.serializers import (
    BillingReportOutput,
    BillingReportQuery,
    EarningsJobLineOutput,
    EarningsOutput,
    ReconciliationReportOutput,
    WalletHistoryLineOutput,
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


class WalletTransactionsQuery(serializers.Serializer[object]):
    job = serializers.IntegerField(required=False, min_value=1)
    transaction = serializers.IntegerField(required=False, min_value=1)


class WalletTransactionsApi(ListAPIView[Posting]):
    serializer_class = WalletLineOutput

    @extend_schema(
        summary="The user's ledger lines, newest first",
        description="`?job=` or `?transaction=`: the entries behind one line of `wallet/history/`.",
        parameters=[
            OpenApiParameter("job", int, description="only this job's entries"),
            OpenApiParameter("transaction", int, description="only this transaction's"),
        ],
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    def get_queryset(self) -> QuerySet[Posting]:
        query = WalletTransactionsQuery(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return wallet_transactions(
            request_user(self.request),
            job_id=query.validated_data.get("job"),
            transaction_id=query.validated_data.get("transaction"),
        )


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


class _FormatParameterNegotiation(BaseContentNegotiation):
    """``?format=`` is the billing report's own parameter (json or csv), validated with the
    others: DRF's URL format override would look for a renderer of that name and answer an
    unknown one with a bare 404. The report renders JSON, or writes its CSV itself."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


_KEY_COLUMNS: dict[BillingGroup, tuple[str, ...]] = {
    BillingGroup.DAY: ("day",),
    BillingGroup.HOST: ("host", "host_name", "owner", "owner_username"),
    BillingGroup.USER: ("user", "username"),
}
_EMPTY_KEYS = dict.fromkeys(
    ("day", "host", "host_name", "owner", "owner_username", "user", "username")
)


def _row_out(
    row: BillingRow, group: BillingGroup, hosts: Mapping[int, HostLabel]
) -> dict[str, Any]:
    keys: dict[str, Any] = dict(_EMPTY_KEYS)
    if group is BillingGroup.DAY:
        keys["day"] = row.key
    elif group is BillingGroup.HOST:
        label = hosts.get(row.key) if isinstance(row.key, int) else None
        keys["host"] = row.key
        if label is not None:
            keys.update(
                host_name=label.name, owner=label.owner_id, owner_username=label.owner_username
            )
    else:
        keys.update(user=row.key, username=row.username)
    return {**keys, **row.figures}


def _report_out(report: BillingReport) -> dict[str, Any]:
    host_rows = [*report.top_hosts, *(report.rows if report.group_by is BillingGroup.HOST else [])]
    hosts = host_labels_of({row.key for row in host_rows if isinstance(row.key, int)})
    return {
        "from": report.period.first,
        "to": report.period.last,
        "group_by": report.group_by.value,
        "rows": [_row_out(row, report.group_by, hosts) for row in report.rows],
        "totals": report.totals,
        "top_hosts": [_row_out(row, BillingGroup.HOST, hosts) for row in report.top_hosts],
        "top_renters": [_row_out(row, BillingGroup.USER, hosts) for row in report.top_renters],
    }


def _csv_cell(value: object) -> object:
    # Names are chosen by users: a cell starting with = + - @ would run as a formula in a
    # spreadsheet (CSV injection), so such text is quoted with a leading apostrophe.
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return "" if value is None else value


def _csv_response(body: Mapping[str, Any], group: BillingGroup) -> HttpResponse:
    columns = (*_KEY_COLUMNS[group], *FIGURES)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in body["rows"]:
        writer.writerow([_csv_cell(row[column]) for column in columns])
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    name = f"communipute-billing-by-{group.value}-{body['from']}-{body['to']}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


HISTORY_CSV_COLUMNS = (
    "at",
    "line",
    "job_id",
    "job_name",
    "transaction_id",
    "memo",
    "amount_micros",
    "hold_micros",
    "charged_micros",
    "reversed_micros",
    "refund_micros",
    "held_micros",
    "cost_micros",
    "entry_count",
)


def _history_out(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    lines = list(rows)
    names = job_names_of({line["group_job"] for line in lines if line["group_job"] is not None})
    return [
        {
            **line,
            "job_id": line["group_job"],
            "amount_micros": line["net_micros"],
            "transaction_id": line["group_transaction"],
            "memo": line["memo"] or "",
            "job_name": names.get(line["group_job"]),
            "cost_micros": line["charged_micros"] - line["reversed_micros"],
        }
        for line in lines
    ]


def _history_csv(lines: list[dict[str, Any]]) -> HttpResponse:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HISTORY_CSV_COLUMNS)
    for line in lines:
        at = line["at"].isoformat().replace("+00:00", "Z")
        writer.writerow([at, *(_csv_cell(line[c]) for c in HISTORY_CSV_COLUMNS[1:])])
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="communipute-wallet-history.csv"'
    return response


class WalletHistoryQuery(serializers.Serializer[object]):
    format = serializers.ChoiceField(choices=["json", "csv"], default="json")


class WalletHistoryApi(GenericAPIView[Any]):
    """The wallet's history, one line per job, earnings per job, and purchase or payout."""

    serializer_class = WalletHistoryLineOutput
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _FormatParameterNegotiation

    @extend_schema(
        summary="The wallet history: one line per job, purchase, grant and payout",
        description="The user's ledger entries grouped (ledger.history, docs/ledger.md): a job "
        "line per job (hold, charged, reversed, refunded, still held), a host owner's earnings "
        "line per job, and one line per other transaction on the wallet or earnings; newest "
        "first, paginated. `format=csv` downloads every line as CSV with a header row.",
        parameters=[OpenApiParameter("format", str, enum=["json", "csv"], default="json")],
        responses={
            (200, "application/json"): WalletHistoryLineOutput(many=True),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="format=csv: every line, with a header row."
            ),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        query = WalletHistoryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        if query.validated_data["format"] == "csv":
            return _history_csv(_history_out(self.get_queryset()))
        page = self.paginate_queryset(self.get_queryset())
        assert page is not None  # the API's default pagination is on
        return self.get_paginated_response(
            WalletHistoryLineOutput(_history_out(page), many=True).data
        )

    def get_queryset(self) -> Any:
        return wallet_history(request_user(self.request))


class BillingReportApi(APIView):
    permission_classes = [IsAdminUser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _FormatParameterNegotiation

    @extend_schema(
        summary="Billing figures per day, host or user (staff only)",
        description=(
            "Credits bought, grants, gross charges, platform fees, host earnings, reversals, "
            "refunds and payouts in integer micro-credits, summed from the ledger for whole UTC "
            f"days from `from` to `to`, both included (default: the last {REPORT_DEFAULT_DAYS} "
            f"days; at most {REPORT_MAX_DAYS}). `format=csv` downloads the rows as CSV with a "
            "header row. docs/reports.md defines every figure and grouping."
        ),
        parameters=[
            OpenApiParameter(
                "from",
                OpenApiTypes.DATE,
                description=f"First day, included (UTC). Default: {REPORT_DEFAULT_DAYS - 1} "
                "days before `to`.",
            ),
            OpenApiParameter(
                "to", OpenApiTypes.DATE, description="Last day, included (UTC). Default: today."
            ),
            OpenApiParameter(
                "group_by",
                str,
                enum=[g.value for g in BillingGroup],
                default=BillingGroup.DAY.value,
            ),
            OpenApiParameter("format", str, enum=["json", "csv"], default="json"),
        ],
        responses={
            (200, "application/json"): BillingReportOutput,
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="format=csv: the rows, with a header row."
            ),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        query = BillingReportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        period = billing_period_resolve(
            first=params.get("from"), last=params.get("to"), today=_today()
        )
        group = BillingGroup(params["group_by"])
        body = _report_out(billing_report(period=period, group_by=group))
        if params["format"] == "csv":
            return _csv_response(body, group)
        return Response(BillingReportOutput(body).data)


def _today() -> date:
    return timezone.now().date()  # now() is in UTC (USE_TZ), so this is the UTC day
