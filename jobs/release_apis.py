"""The releases API (docs/pools.md, "Outputs leave only when released"): the renter asks for
an output kept on the pool's store; the pool's data stewards list, approve and refuse. Each
write is one durable transaction (``config.transactions.durable``); the ``output.release``
to a pool host goes after the commit."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from config.api import validated
from config.transactions import durable
from jobs.models import JobOutput, ReleaseStatus
from jobs.serializers import (
    JobOutputSerializer,
    ReleaseDecisionInput,
    ReleaseOutput,
    ReleaseQuery,
)
from jobs.services.releases import (
    output_release_request,
    release_approve,
    release_refuse,
    releases_of,
)

RELEASE_FILTERS = [status for status in ReleaseStatus.values if status != ReleaseStatus.NONE]


class JobOutputReleaseApi(APIView):
    @extend_schema(
        summary="Ask for an output kept on the pool's store",
        description="The job's owner. With the pool's airlock the release waits for a data "
        "steward (status requested); without it, it is approved at once by the pool's policy. "
        "Asking again changes nothing; a refused output: 409 release_refused.",
        request=None,
        responses=JobOutputSerializer,
    )
    @durable
    def post(self, request: Request, job_id: int, name: str) -> Response:
        output = output_release_request(user=request_user(request), job_id=job_id, name=name)
        return Response(JobOutputSerializer(output).data)


class OrganisationReleaseListApi(generics.ListAPIView[JobOutput]):
    serializer_class = ReleaseOutput

    @extend_schema(
        summary="The pool's releases",
        description="Outputs of the pool's jobs asked for, oldest request first. The "
        "organisation's data stewards and admins.",
        parameters=[OpenApiParameter("status", str, enum=RELEASE_FILTERS)],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[JobOutput]:
        if getattr(self, "swagger_fake_view", False):
            return JobOutput.objects.none()
        query = ReleaseQuery(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data.get("status")
        return releases_of(
            user=request_user(self.request),
            organisation_id=self.kwargs["organisation_id"],
            status=ReleaseStatus(wanted) if wanted else None,
        )


class ReleaseApproveApi(APIView):
    @extend_schema(
        summary="Approve a requested release",
        description="A data steward of the organisation, not on their own job's output. A pool "
        "host then carries the bytes to the central store; the output is downloadable once "
        "they arrived with the digest the job reported.",
        request=ReleaseDecisionInput,
        responses=ReleaseOutput,
    )
    @durable
    def post(self, request: Request, organisation_id: int, release_id: int) -> Response:
        data = validated(ReleaseDecisionInput, request)
        output = release_approve(
            user=request_user(request),
            organisation_id=organisation_id,
            release_id=release_id,
            note=data.get("note", ""),
        )
        return Response(ReleaseOutput(output).data)


class ReleaseRefuseApi(APIView):
    @extend_schema(
        summary="Refuse a requested release",
        description="A data steward of the organisation, not on their own job's output, with "
        "a note saying why. The output stays on the pool's store and is never downloadable.",
        request=ReleaseDecisionInput,
        responses=ReleaseOutput,
    )
    @durable
    def post(self, request: Request, organisation_id: int, release_id: int) -> Response:
        data = validated(ReleaseDecisionInput, request)
        output = release_refuse(
            user=request_user(request),
            organisation_id=organisation_id,
            release_id=release_id,
            note=data.get("note", ""),
        )
        return Response(ReleaseOutput(output).data)
