"""POST /api/v1/quotes/: a job spec in, the estimate and the fitting hosts out."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from config.api import MicrosField
from marketplace.disk import DiskRequest, disk_check
from marketplace.placement import JobSpec, disk_needed_mb
from marketplace.quotes import quote_build


class JobLimitsSerializer(serializers.Serializer[JobSpec]):
    """The resource part of a job spec, shared by quotes and job submission."""

    cpus = serializers.DecimalField(
        max_digits=6,
        decimal_places=2,
        min_value=Decimal("0.1"),
        default=Decimal(1),
        coerce_to_string=False,
    )
    memory_mb = serializers.IntegerField(min_value=16, default=512)
    gpus = serializers.IntegerField(min_value=0, default=0)
    timeout_seconds = serializers.IntegerField(
        min_value=1, max_value=settings.JOB_MAX_TIMEOUT_SECONDS, default=3600
    )


class DiskInputSerializer(serializers.Serializer[DiskRequest]):
    work_mb = serializers.IntegerField(required=False, help_text="/work in MB (default 1024)")
    outputs_mb = serializers.IntegerField(required=False, help_text="/outputs in MB (default 1024)")
    tmp_mb = serializers.IntegerField(
        required=False, help_text="the job's tmpfs in MB (default 256)"
    )


class QuoteRequestSerializer(JobLimitsSerializer):
    host = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    disk = DiskInputSerializer(
        required=False, help_text="as the submit's: hosts that can't give it are left out"
    )
    inputs_bytes = serializers.IntegerField(
        required=False,
        default=0,
        min_value=0,
        max_value=settings.JOB_INPUTS_MAX_BYTES,
        help_text="the total size of the job's inputs (they take the host's disk too)",
    )
    max_cost_micros = MicrosField(required=False, allow_null=True, min_value=1)
    pool = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="quote this organisation's pool only (docs/pools.md)",
    )


class RatesSerializer(serializers.Serializer[object]):
    cpu_core_hour_micros = serializers.IntegerField()
    memory_gb_hour_micros = serializers.IntegerField()
    gpu_hour_micros = serializers.IntegerField()


class HostQuoteSerializer(serializers.Serializer[object]):
    host = serializers.IntegerField(source="host_id")
    name = serializers.CharField()
    rates = RatesSerializer()
    per_hour_micros = serializers.IntegerField()
    estimate_micros = serializers.IntegerField(help_text="the most the job can cost here")
    minimum_cap_micros = serializers.IntegerField(help_text="one minute at this host's rates")
    reliability = serializers.FloatField(help_text="0..1, see marketplace/placement.py")


class QuoteSerializer(serializers.Serializer[object]):
    per_hour_micros = serializers.IntegerField(allow_null=True)
    estimate_micros = serializers.IntegerField(
        allow_null=True, help_text="cost of the whole timeout on the best host"
    )
    minimum_cap_micros = serializers.IntegerField(allow_null=True)
    hosts = HostQuoteSerializer(many=True)
    host_misfit = serializers.CharField(allow_null=True)


class QuoteApi(APIView):
    @extend_schema(request=QuoteRequestSerializer, responses=QuoteSerializer)
    def post(self, request: Request) -> Response:
        given = QuoteRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        disk = disk_check(DiskRequest(**data.get("disk", {})))
        disk_mb = disk_needed_mb(
            work_mb=disk.work_mb,
            outputs_mb=disk.outputs_mb,
            tmp_mb=disk.tmp_mb,
            inputs_bytes=data["inputs_bytes"],
        )
        quote = quote_build(
            request_user(request),
            JobSpec(
                data["cpus"], data["memory_mb"], data["gpus"], data["timeout_seconds"], disk_mb
            ),
            host_id=data.get("host"),
            max_cost_micros=data.get("max_cost_micros"),
            pool_id=data.get("pool"),
        )
        body = asdict(quote)
        for host in body["hosts"]:
            host["reliability"] = round(float(host["reliability"]), 4)
        return Response(QuoteSerializer(body).data)
