"""The catalog: GET /api/v1/hosts/ and /api/v1/hosts/{id}/."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from config.api import KeysetPagination, MicrosField
from hosts.models import Host
from hosts.serializers import LISTING_COLUMNS, HostListingOutput
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

    serializer_class = HostListingOutput
    pagination_class = KeysetPagination

    def get_queryset(self) -> Any:
        query = CatalogQueryInput(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        hosts = selectors.hosts_catalog(user=request_user(self.request), filters=query.filters())
        return hosts.only(*LISTING_COLUMNS)


class HostListingApi(APIView):
    @extend_schema(responses=HostListingOutput)
    def get(self, request: Request, host_id: int) -> Response:
        host = selectors.host_listing_get(user=request_user(request), host_id=host_id)
        return Response(HostListingOutput(host).data)
