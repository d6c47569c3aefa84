"""Host endpoints: enrollment, agent registration, and the owner's hosts (/my/hosts/)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from accounts.models import User
from hosts import selectors, services
from hosts.models import Host
from hosts.serializers import (
    AgentRegisteredSerializer,
    AgentRegisterSerializer,
    CredentialsRevokedSerializer,
    EnrollmentCreateSerializer,
    EnrollmentSerializer,
    HostUpdateSerializer,
    OwnedHostSerializer,
)


def _user(request: Request) -> User:
    assert isinstance(request.user, User)
    return request.user


class EnrollmentCreateApi(APIView):
    @extend_schema(request=EnrollmentCreateSerializer, responses={201: EnrollmentSerializer})
    def post(self, request: Request) -> Response:
        payload = EnrollmentCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        issued = services.enrollment_create(
            owner=_user(request), name=payload.validated_data["name"]
        )
        body = EnrollmentSerializer(issued).data
        return Response(body, status=status.HTTP_201_CREATED)


class AgentRegisterApi(APIView):
    """Called by ``communipute-agent enroll``: no user, the enrollment token is the proof."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(request=AgentRegisterSerializer, responses={201: AgentRegisteredSerializer})
    def post(self, request: Request) -> Response:
        payload = AgentRegisterSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        registered = services.host_register(
            enrollment_token=payload.validated_data["enrollment_token"],
            specs=payload.validated_data["specs"],
            name=payload.validated_data["name"],
        )
        body = {"host_id": registered.host.pk, "credential": registered.credential}
        return Response(AgentRegisteredSerializer(body).data, status=status.HTTP_201_CREATED)


class MyHostListApi(ListAPIView[Host]):
    serializer_class = OwnedHostSerializer

    def get_queryset(self) -> Any:
        return selectors.hosts_owned(owner=_user(self.request))


class MyHostDetailApi(APIView):
    @extend_schema(responses=OwnedHostSerializer)
    def get(self, request: Request, host_id: int) -> Response:
        host = selectors.host_owned_get(owner=_user(request), host_id=host_id)
        return Response(OwnedHostSerializer(host).data)

    @extend_schema(request=HostUpdateSerializer, responses=OwnedHostSerializer)
    def patch(self, request: Request, host_id: int) -> Response:
        payload = HostUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        owner = _user(request)
        services.host_update(owner=owner, host_id=host_id, changes=payload.validated_data)
        host = selectors.host_owned_get(owner=owner, host_id=host_id)
        return Response(OwnedHostSerializer(host).data)


class MyHostCredentialsRevokeApi(APIView):
    @extend_schema(request=None, responses=CredentialsRevokedSerializer)
    def post(self, request: Request, host_id: int) -> Response:
        revoked = services.credential_revoke(owner=_user(request), host_id=host_id)
        return Response(CredentialsRevokedSerializer({"revoked": revoked}).data)
