"""The jobs REST API (API.md): submit, list, read, cancel, logs, outputs; agent uploads.

The views that write are entry points: each request is one durable transaction
(``config.transactions.durable``) that the services join; what reaches a socket or an agent
goes after the commit.
"""

from __future__ import annotations

import posixpath
from typing import Any

from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from accounts.idempotency import idempotent
from config.errors import NotFound
from config.transactions import durable
from jobs.authentication import HostAgent, HostCredentialAuthentication, IsHostAgent
from jobs.models import Job, JobOutput
from jobs.selectors import job_of, job_outputs, job_receipt, jobs_of
from jobs.serializers import (
    JobCreateSerializer,
    JobOutputSerializer,
    JobSerializer,
    LogPageSerializer,
    LogQuerySerializer,
    OutputUploadSerializer,
    ReceiptOutput,
    UsageHistoryOutput,
)
from jobs.services.cancel import job_cancel
from jobs.services.logs import log_read
from jobs.services.outputs import output_store
from jobs.services.submit import job_submit
from jobs.usage_history import USAGE_HISTORY_MAX_POINTS, job_usage_history


class JobListCreateApi(generics.ListAPIView[Job]):
    serializer_class = JobSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self) -> Any:
        return jobs_of(request_user(self.request))

    @extend_schema(request=JobCreateSerializer, responses={201: JobSerializer})
    @durable
    @idempotent()
    def post(self, request: Request) -> Response:
        # Submit: the job, its files, its hold and its first offer, in one transaction. The
        # Idempotency-Key record shares it (durable wraps idempotent): the claim, the submit and
        # the stored response commit together, so a crash or an error leaves neither a job nor
        # a claim, and a retry runs the submit afresh; a concurrent repeat waits on the claim's
        # unique index until the first commits, then gets its response. With the record in a
        # transaction of its own, a crash after the submit's commit would leave the claim
        # "processing", and its retry after the timeout would make a second job.
        given = JobCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        job = job_submit(owner=request_user(request), submission=given.submission())
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(APIView):
    @extend_schema(responses=JobSerializer)
    def get(self, request: Request, job_id: int) -> Response:
        return Response(JobSerializer(job_of(request_user(request), job_id)).data)


class JobReceiptApi(APIView):
    @extend_schema(
        summary="What the job cost",
        description="Per attempt that ran: usage, rates, gross, platform fee, host net and "
        "reversals; the totals; the hold and the refund (docs/metering.md). The owner's only.",
        responses=ReceiptOutput,
    )
    def get(self, request: Request, job_id: int) -> Response:
        return Response(ReceiptOutput(job_receipt(request_user(request), job_id)).data)


class JobUsageApi(APIView):
    @extend_schema(
        summary="The job's stored usage and status timeline",
        description="Per attempt that was accepted: the usage samples at the report "
        f"resolution, at most {USAGE_HISTORY_MAX_POINTS} per attempt (evenly spread over a "
        "long one, with the first and the last); the timeline from the stored job and attempt "
        "steps. The job's owner, or a host owner for the attempts on their hosts.",
        responses=UsageHistoryOutput,
    )
    def get(self, request: Request, job_id: int) -> Response:
        history = job_usage_history(request_user(request), job_id)
        return Response(UsageHistoryOutput(history).data)


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobSerializer)
    @durable
    def post(self, request: Request, job_id: int) -> Response:
        job = job_cancel(user=request_user(request), job_id=job_id)
        return Response(JobSerializer(job).data)


class JobLogsApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("offset", int, description="byte offset to read from"),
            OpenApiParameter("attempt", int, description="an attempt (default: the latest)"),
        ],
        responses=LogPageSerializer,
    )
    def get(self, request: Request, job_id: int) -> Response:
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        job = job_of(request_user(request), job_id)
        page = log_read(
            job,
            offset=query.validated_data["offset"],
            attempt_number=query.validated_data.get("attempt"),
        )
        return Response(LogPageSerializer({"job_id": job.pk, **page.__dict__}).data)


class JobOutputsApi(generics.ListAPIView[JobOutput]):
    serializer_class = JobOutputSerializer

    def get_queryset(self) -> Any:
        job = job_of(request_user(self.request), self.kwargs["job_id"])
        return job_outputs(job).select_related("attempt")


class JobOutputDownloadApi(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, job_id: int, name: str) -> FileResponse:
        job = job_of(request_user(request), job_id)
        output = job_outputs(job).filter(name=name).first()
        if output is None:
            raise NotFound("no such output")
        return FileResponse(
            output.file.open("rb"),
            as_attachment=True,
            filename=posixpath.basename(output.name),
            content_type="application/octet-stream",
        )


class AgentOutputUploadApi(APIView):
    """The agent uploads one output file of an attempt it ran (host credential, Bearer)."""

    authentication_classes = [HostCredentialAuthentication]
    permission_classes = [IsHostAgent]
    parser_classes = [MultiPartParser]

    @extend_schema(request=OutputUploadSerializer, responses={201: JobOutputSerializer})
    @durable
    def post(self, request: Request, job_id: int, attempt: int) -> Response:
        given = OutputUploadSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        agent = request.user
        assert isinstance(agent, HostAgent)
        output = output_store(
            host_id=agent.host_id,
            job_id=job_id,
            attempt_number=attempt,
            name=given.validated_data["name"],
            upload=given.validated_data["file"],
        )
        return Response(JobOutputSerializer(output).data, status=status.HTTP_201_CREATED)
