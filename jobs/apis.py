"""The jobs REST API (API.md): submit, list, read, cancel, logs, outputs; agent output uploads
(tus, docs/data.md).

The views that write are entry points: each request is one durable transaction
(``config.transactions.durable``) that the services join; what reaches a socket or an agent
goes after the commit.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from accounts.idempotency import idempotent
from blobs import tus
from blobs.apis import upload_answer
from blobs.http import blob_response
from blobs.serializers import UploadSerializer
from config.errors import NotFound, ValidationFailed
from config.transactions import durable, durable_call
from jobs.authentication import HostAgent, HostCredentialAuthentication, IsHostAgent
from jobs.models import Job, JobOutput
from jobs.selectors import job_of, job_outputs, job_receipt, jobs_of
from jobs.serializers import (
    JobCreateSerializer,
    JobListQuery,
    JobOutputSerializer,
    JobSerializer,
    LogPageSerializer,
    LogQuerySerializer,
    ReceiptOutput,
    UsageHistoryOutput,
)
from jobs.services.cancel import job_cancel
from jobs.services.logs import log_absence_check, log_read
from jobs.services.outputs import (
    output_download_check,
    output_release_upload_create,
    output_upload_abort,
    output_upload_create,
    output_upload_of,
    output_upload_receive,
)
from jobs.services.submit import job_submit
from jobs.usage_history import USAGE_HISTORY_MAX_POINTS, job_usage_history

AGENT_UPLOADS = "/api/v1/agent/uploads/"


class JobListCreateApi(generics.ListAPIView[Job]):
    serializer_class = JobSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                str,
                description="only jobs in these statuses, comma-separated (`running,queued`)",
            )
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        found = jobs_of(request_user(self.request))
        query = JobListQuery(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data.get("status")
        return found.filter(status__in=wanted) if wanted else found

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
        log_absence_check(job, query.validated_data.get("attempt"))
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
    def get(self, request: Request, job_id: int, name: str) -> Any:
        job = job_of(request_user(request), job_id)
        output = job_outputs(job).filter(name=name).select_related("blob").first()
        if output is None:
            raise NotFound("no such output")
        output_download_check(output)
        if output.blob is None:
            raise NotFound("no such output")
        return blob_response(request._request, output.blob, filename=posixpath.basename(name))


class AgentUploadsApi(APIView):
    """tus creation of an output upload by the agent (host credential, Bearer):
    ``Upload-Metadata: job_id, attempt, name, sha256``; or, for an approved output a pool host
    carries to the central store (``output.release``), ``release, name, sha256``."""

    authentication_classes = [HostCredentialAuthentication]
    permission_classes = [IsHostAgent]

    @extend_schema(exclude=True)
    def options(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return tus.options_response()

    @extend_schema(request=None, responses={201: UploadSerializer})
    def post(self, request: Request) -> Response:
        given = tus.creation(request.headers)
        if "release" in given.metadata:  # an approved output's bytes (output.release)
            upload = durable_call(
                output_release_upload_create,
                host_id=_agent(request).host_id,
                release_id=_metadata_integer(given, "release"),
                name=given.required("name"),
                sha256=given.required("sha256"),
                length=given.length,
            )
            return upload_answer(
                upload, code=status.HTTP_201_CREATED, location=f"{AGENT_UPLOADS}{upload.pk}/"
            )
        upload = durable_call(
            output_upload_create,
            host_id=_agent(request).host_id,
            job_id=_metadata_integer(given, "job_id"),
            attempt_number=_metadata_integer(given, "attempt"),
            name=given.required("name"),
            sha256=given.required("sha256"),
            length=given.length,
        )
        return upload_answer(
            upload, code=status.HTTP_201_CREATED, location=f"{AGENT_UPLOADS}{upload.pk}/"
        )


class AgentUploadDetailApi(APIView):
    """tus HEAD, PATCH and DELETE of an output upload, for the host whose attempt it is."""

    authentication_classes = [HostCredentialAuthentication]
    permission_classes = [IsHostAgent]

    @extend_schema(exclude=True)
    def options(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return tus.options_response()

    @extend_schema(responses={200: None})
    def head(self, request: Request, upload_id: uuid.UUID) -> Response:
        upload = output_upload_of(host_id=_agent(request).host_id, upload_id=upload_id)
        response = Response(status=status.HTTP_200_OK)
        tus.upload_headers(response, upload)
        return response

    @extend_schema(request=None, responses={204: None})
    def patch(self, request: Request, upload_id: uuid.UUID) -> Response:
        host_id = _agent(request).host_id
        output_upload_of(host_id=host_id, upload_id=upload_id)  # another host's: 404 first
        given = tus.patch(request.headers)
        upload = durable_call(
            output_upload_receive,
            host_id=host_id,
            upload_id=upload_id,
            offset=given.offset,
            body=request._request,
            length=given.length,
        )
        return upload_answer(upload, code=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, upload_id: uuid.UUID) -> Response:
        durable_call(output_upload_abort, host_id=_agent(request).host_id, upload_id=upload_id)
        response = Response(status=status.HTTP_204_NO_CONTENT)
        response["Tus-Resumable"] = tus.VERSION
        return response


def _agent(request: Request) -> HostAgent:
    agent = request.user
    assert isinstance(agent, HostAgent)
    return agent


def _metadata_integer(given: tus.Creation, key: str) -> int:
    text = given.required(key)
    if not text.isdigit() or len(text) > 18:
        raise ValidationFailed(
            f"Upload-Metadata {key} must be a whole number",
            fields={"Upload-Metadata": [f"{key}: a whole number."]},
        )
    return int(text)
