"""The job groups REST API (API.md; docs/jobs.md "Job groups"): create, list, read (with a page
of its tasks), results in index order, receipt, cancel. The owner's only: others' ids are 404.

The views that write are entry points: one durable transaction per request
(``config.transactions.durable``) that the services join; what reaches a socket or an agent goes
after the commit.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from accounts.idempotency import idempotent
from config.api import Pagination
from config.transactions import durable
from jobs.group_selectors import group_of, group_receipt, group_results, group_tasks, groups_of
from jobs.group_serializers import (
    GroupReceiptSerializer,
    GroupTaskSerializer,
    JobGroupCreateSerializer,
    JobGroupDetailSerializer,
    JobGroupSerializer,
    ResultsPageSerializer,
    ResultsQuerySerializer,
    TaskQuerySerializer,
)
from jobs.models import JobGroup
from jobs.services.group_create import group_create
from jobs.services.groups import group_cancel


class JobGroupListCreateApi(generics.ListAPIView[JobGroup]):
    serializer_class = JobGroupSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self) -> Any:
        return groups_of(request_user(self.request))

    @extend_schema(request=JobGroupCreateSerializer, responses={201: JobGroupDetailSerializer})
    @durable
    @idempotent()
    def post(self, request: Request) -> Response:
        # One transaction for the claim, the group, its tasks and its first tasks' jobs, holds
        # and offers (as the job submit: jobs.apis.JobListCreateApi.post).
        given = JobGroupCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        group = group_create(owner=request_user(request), request=given.group_request())
        return Response(_detail(request, group), status=status.HTTP_201_CREATED)


def _detail(request: Request, group: JobGroup) -> Any:
    """The group with a page of its tasks (``?page=``, ``?page_size=``, ``?status=``)."""
    query = TaskQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    paginator = Pagination()
    tasks = group_tasks(group, status=query.validated_data.get("status"))
    page = paginator.paginate_queryset(tasks, request) or []
    listed = paginator.get_paginated_response(GroupTaskSerializer(page, many=True).data).data
    return JobGroupDetailSerializer(group, context={"tasks": listed}).data


_TASK_PARAMETERS = [
    OpenApiParameter("page", int, description="the page of tasks (by index)"),
    OpenApiParameter("page_size", int, description="tasks per page (at most 500)"),
    OpenApiParameter("status", str, description="only the tasks in this status"),
]


class JobGroupDetailApi(APIView):
    @extend_schema(parameters=_TASK_PARAMETERS, responses=JobGroupDetailSerializer)
    def get(self, request: Request, group_id: int) -> Response:
        return Response(_detail(request, group_of(request_user(request), group_id)))


class JobGroupCancelApi(APIView):
    @extend_schema(request=None, responses=JobGroupSerializer)
    @durable
    def post(self, request: Request, group_id: int) -> Response:
        group = group_cancel(user=request_user(request), group_id=group_id)
        return Response(JobGroupSerializer(group).data)


class JobGroupResultsApi(APIView):
    @extend_schema(
        summary="The tasks' results in index order",
        description="From ?index= on, each task's result (status, exit code, its error, "
        "cost, outputs) up to the first task that has none yet (at most ?limit=): pass "
        "next_index back as ?index= to read on; is_complete when every task's result is "
        "read. The group's socket says when to read again.",
        parameters=[
            OpenApiParameter("index", int, description="the first task index (default 0)"),
            OpenApiParameter("limit", int, description="at most this many (default 100)"),
        ],
        responses=ResultsPageSerializer,
    )
    def get(self, request: Request, group_id: int) -> Response:
        query = ResultsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        group = group_of(request_user(request), group_id)
        page = group_results(
            group, index=query.validated_data["index"], limit=query.validated_data["limit"]
        )
        return Response(ResultsPageSerializer(page).data)


class JobGroupReceiptApi(APIView):
    @extend_schema(
        summary="What the group cost",
        description="Per task job (a retried index has several) its receipt's totals "
        "(GET /api/v1/jobs/{id}/receipt/), and their sums.",
        responses=GroupReceiptSerializer,
    )
    def get(self, request: Request, group_id: int) -> Response:
        return Response(GroupReceiptSerializer(group_receipt(request_user(request), group_id)).data)
