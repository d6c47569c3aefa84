"""Host endpoints: enrollment, agent registration, and the owner's hosts (/my/hosts/)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle
from rest_framework.views import APIView

from accounts.authentication import request_user
from config.api import validated
from hosts import pool_services, selectors, services
from hosts.models import Host
from hosts.serializers import (
    AgentRegisterInput,
    AgentRegisterOutput,
    CredentialsRevokedOutput,
    EnrollmentInput,
    EnrollmentOutput,
    HostUpdateInput,
    OwnedHostOutput,
    PoolTokenOutput,
)


class EnrollmentCreateApi(APIView):
    @extend_schema(request=EnrollmentInput, responses={201: EnrollmentOutput})
    def post(self, request: Request) -> Response:
        data = validated(EnrollmentInput, request)
        issued = services.enrollment_create(owner=request_user(request), name=data["name"])
        body = EnrollmentOutput(issued).data
        return Response(body, status=status.HTTP_201_CREATED)


class AgentRegisterApi(APIView):
    """Called by ``communipute-agent enroll``: no user, the enrollment token is the proof."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle, ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(request=AgentRegisterInput, responses={201: AgentRegisterOutput})
    def post(self, request: Request) -> Response:
        data = validated(AgentRegisterInput, request)
        registered = services.host_register(
            enrollment_token=data["enrollment_token"], specs=data["specs"], name=data["name"]
        )
        body = {"host_id": registered.host.pk, "credential": registered.credential}
        return Response(AgentRegisterOutput(body).data, status=status.HTTP_201_CREATED)


class MyHostListApi(ListAPIView[Host]):
    serializer_class = OwnedHostOutput

    def get_queryset(self) -> Any:
        return selectors.hosts_owned(owner=request_user(self.request))


class MyHostDetailApi(APIView):
    @extend_schema(responses=OwnedHostOutput)
    def get(self, request: Request, host_id: int) -> Response:
        host = selectors.host_owned_get(owner=request_user(request), host_id=host_id)
        return Response(OwnedHostOutput(host).data)

    @extend_schema(request=HostUpdateInput, responses=OwnedHostOutput)
    def patch(self, request: Request, host_id: int) -> Response:
        changes = validated(HostUpdateInput, request)
        owner = request_user(request)
        services.host_update(owner=owner, host_id=host_id, changes=changes)
        host = selectors.host_owned_get(owner=owner, host_id=host_id)
        return Response(OwnedHostOutput(host).data)


class MyHostCredentialsRevokeApi(APIView):
    @extend_schema(request=None, responses=CredentialsRevokedOutput)
    def post(self, request: Request, host_id: int) -> Response:
        revoked = services.credential_revoke(owner=request_user(request), host_id=host_id)
        return Response(CredentialsRevokedOutput({"revoked": revoked}).data)


class PoolTokenCreateApi(APIView):
    @extend_schema(request=None, responses={201: PoolTokenOutput})
    def post(self, request: Request, organisation_id: int) -> Response:
        """Issue a one-time pool token that joins one host to the pool (organisation admins;
        a member 403, anyone else 404). The plaintext ``token`` is in this response only."""
        issued = pool_services.pool_token_issue(
            actor=request_user(request), organisation_id=organisation_id
        )
        return Response(PoolTokenOutput(issued).data, status=status.HTTP_201_CREATED)
