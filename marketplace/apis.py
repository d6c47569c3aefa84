"""The catalog: GET /api/v1/hosts/ and /api/v1/hosts/{id}/."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from config.api import KeysetPagination, KeysetQuery, MicrosField
from hosts.models import Host
from hosts.serializers import (
    LISTING_ATTNAMES,
    LISTING_COLUMNS,
    HostListingOutput,
    listing_dict,
    listing_dicts,
)
from hosts.specs import arch_normalise
from marketplace import selectors

MAX_ORDERING_KEYS = 3


class CatalogQueryInput(serializers.Serializer[Any]):
    arch = serializers.CharField(required=False, max_length=32)
    os = serializers.CharField(required=False, max_length=32)
    min_cpus = serializers.IntegerField(required=False, min_value=0)
    min_memory_mb = serializers.IntegerField(required=False, min_value=0)
    gpu = serializers.BooleanField(required=False, allow_null=True, default=None)
    min_gpus = serializers.IntegerField(required=False, min_value=0)
    min_disk_mb = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="the disk one job may take there (job_disk_mb, else disk_free_mb) at least",
    )
    max_price_micros = MicrosField(required=False, min_value=0)
    online = serializers.BooleanField(required=False, allow_null=True, default=None)
    accepting = serializers.BooleanField(required=False, allow_null=True, default=None)
    pool = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="an organisation you belong to: its pool's hosts only (docs/pools.md)",
    )
    ordering = serializers.CharField(
        required=False,
        default="price",
        help_text="comma-separated keys, '-' for descending: " + ", ".join(selectors.ORDERINGS),
    )

    def validate_arch(self, value: str) -> str:
        return arch_normalise(value)

    def validate_os(self, value: str) -> str:
        return value.strip().lower()

    def validate_ordering(self, value: str) -> tuple[str, ...]:
        keys = tuple(key.strip() for key in value.split(",") if key.strip())
        if not 1 <= len(keys) <= MAX_ORDERING_KEYS:
            raise serializers.ValidationError(f"1 to {MAX_ORDERING_KEYS} ordering keys")
        unknown = [key for key in keys if key.lstrip("-") not in selectors.ORDERINGS]
        if unknown:
            raise serializers.ValidationError(
                f"unknown ordering {', '.join(unknown)}; use {', '.join(selectors.ORDERINGS)}"
            )
        return keys

    def filters(self) -> selectors.CatalogFilters:
        data = {k: v for k, v in self.validated_data.items() if v is not None}
        return selectors.CatalogFilters(**data)


@extend_schema(parameters=[CatalogQueryInput])
class HostCatalogApi(ListAPIView[Host]):
    """The catalog, paged by cursor (`next` and `previous` carry it): docs/hosts.md, "Pages"."""

    # A cursor page runs the page and the count as statements compiled once per shape of the
    # query (config.statements) and turns their rows into listings directly (hosts.serializers
    # ``listing_dict``); ``?page=N`` takes the old path through the queryset.
    serializer_class = HostListingOutput
    pagination_class = KeysetPagination

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        query = CatalogQueryInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        user, filters = request_user(request), query.filters()
        paginator = self.paginator
        assert isinstance(paginator, KeysetPagination)
        if paginator.is_numbered(request):
            hosts = selectors.hosts_catalog(user=user, filters=filters).only(*LISTING_COLUMNS)
            page = paginator.paginate_queryset(hosts, request, self)
            return paginator.get_paginated_response(HostListingOutput(page, many=True).data)
        catalog = selectors.catalog_query(user=user, filters=filters)
        rows = paginator.paginate_keyset(
            KeysetQuery(catalog.shape, catalog.values, partial(_listing_rows, catalog)), request
        )
        return paginator.get_paginated_response(listing_dicts(rows))


def _listing_rows(catalog: selectors.CatalogQuery, values: Mapping[str, Any]) -> QuerySet[Host]:
    """The catalog's queryset as rows of the listing's columns and the sort keys."""
    hosts = catalog.build(values)
    rows: QuerySet[Host] = hosts.values(*LISTING_ATTNAMES, *hosts.query.annotations)
    return rows


class HostListingApi(APIView):
    @extend_schema(responses=HostListingOutput)
    def get(self, request: Request, host_id: int) -> Response:
        host = selectors.host_listing_get(user=request_user(request), host_id=host_id)
        return Response(listing_dict(host.__dict__))
