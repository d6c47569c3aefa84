"""The pool endpoints that the audit trail records or reads (docs/pools.md, docs/api.md):
a pool's settings, a host joining or leaving, the trail itself. Writes are entry points: one
durable transaction each, the change and its audit entry together."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from accounts.pool_settings import pool_settings_of
from accounts.selectors import membership_of
from config.api import validated
from config.errors import ValidationFailed
from config.transactions import durable
from hosts.selectors import host_owned_get
from hosts.serializers import OwnedHostOutput
from jobs.audit_models import PoolAuditEvent
from jobs.pool_selectors import AuditFilters, pool_audit_events
from jobs.pool_serializers import (
    AuditEventOutput,
    AuditQuery,
    PoolJoinInput,
    PoolSettingsSerializer,
)
from jobs.services.pools import pool_host_join, pool_host_leave, pool_settings_change

AUDIT_CSV_COLUMNS = ("id", "at", "kind", "actor", "job_id", "host_id", "detail")


class PoolSettingsApi(APIView):
    @extend_schema(responses=PoolSettingsSerializer)
    def get(self, request: Request, organisation_id: int) -> Response:
        """The pool's settings (any member; 404 for anyone else)."""
        organisation = membership_of(request_user(request), organisation_id).organisation
        return Response(pool_settings_of(organisation))

    @extend_schema(request=PoolSettingsSerializer, responses=PoolSettingsSerializer)
    @durable
    def patch(self, request: Request, organisation_id: int) -> Response:
        """Change any of the settings (organisation admins only); audited."""
        if not isinstance(request.data, dict):
            raise ValidationFailed("a JSON object of settings", fields={"body": ["an object"]})
        organisation = pool_settings_change(
            actor=request_user(request), organisation_id=organisation_id, changes=request.data
        )
        return Response(pool_settings_of(organisation))


class MyHostPoolApi(APIView):
    @extend_schema(request=PoolJoinInput, responses=OwnedHostOutput)
    @durable
    def post(self, request: Request, host_id: int) -> Response:
        """Join your host to the pool a pool token was issued for (one-time, expiring)."""
        owner = request_user(request)
        host_owned_get(owner=owner, host_id=host_id)  # 404 before any word about the body
        data = validated(PoolJoinInput, request)
        pool_host_join(owner=owner, host_id=host_id, token=data["token"])
        return Response(OwnedHostOutput(host_owned_get(owner=owner, host_id=host_id)).data)

    @extend_schema(request=None, responses=OwnedHostOutput)
    @durable
    def delete(self, request: Request, host_id: int) -> Response:
        """Take your host out of its pool (409 while it holds the pool's jobs); it is public."""
        owner = request_user(request)
        pool_host_leave(owner=owner, host_id=host_id)
        return Response(OwnedHostOutput(host_owned_get(owner=owner, host_id=host_id)).data)


class _FormatParameter(BaseContentNegotiation):
    """``?format=`` is the trail's own parameter (json or csv), validated with the others."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class PoolAuditApi(GenericAPIView[PoolAuditEvent]):
    serializer_class = AuditEventOutput
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _FormatParameter

    @extend_schema(
        summary="The pool's audit trail, newest first",
        description="Organisation admins only (a member 403, anyone else 404). Filters: "
        "`job`, `kind`, `from` (inclusive), `to` (exclusive). `format=csv` streams every "
        "matching entry with the columns " + ", ".join(AUDIT_CSV_COLUMNS) + " (detail as JSON).",
        parameters=[
            AuditQuery,
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="inclusive"),
        ],
        responses={
            (200, "application/json"): AuditEventOutput(many=True),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="format=csv: every matching entry, a header row."
            ),
        },
    )
    def get(self, request: Request, organisation_id: int) -> HttpResponseBase:
        query = AuditQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        if query.validated_data["format"] == "csv":
            return _audit_csv(self.get_queryset(), organisation_id)
        page = self.paginate_queryset(self.get_queryset())
        assert page is not None  # the API's default pagination is on
        return self.get_paginated_response(AuditEventOutput(page, many=True).data)

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return PoolAuditEvent.objects.none()
        query = AuditQuery(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        filters = AuditFilters(
            job_id=data.get("job"),
            kind=data.get("kind"),
            since=data.get("from"),
            until=data.get("to"),
        )
        return pool_audit_events(
            user=request_user(self.request),
            organisation_id=self.kwargs["organisation_id"],
            filters=filters,
        )


def _csv_cell(value: object) -> object:
    # A cell starting with = + - @ would run as a formula in a spreadsheet (CSV injection).
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return "" if value is None else value


def _audit_csv(events: Any, organisation_id: int) -> StreamingHttpResponse:
    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(AUDIT_CSV_COLUMNS)
        for event in events.iterator(chunk_size=2000):
            actor = event.actor.username if event.actor is not None else None
            detail = json.dumps(event.detail, sort_keys=True, separators=(",", ":"))
            cells = [event.pk, event.at.isoformat(), event.kind, actor]
            writer.writerow([_csv_cell(c) for c in [*cells, event.job_id, event.host_id, detail]])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    name = f"communipute-pool-{organisation_id}-audit.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
