"""Test-only views behind @idempotent (used with ``pytest.mark.urls``).

Each "thing" is an Organisation row, so the side effect is countable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.apis import CsrfApi
from accounts.idempotency import idempotent
from accounts.models import Organisation
from config.errors import InsufficientCredits


@dataclass
class Gate:
    """Lets a test hold the first request inside the view while duplicates arrive."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    fail_next: bool = False


GATE = Gate()


class ThingSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()


# Both decorator orders are in use below: the schema keeps our annotation either way.
thing_schema = extend_schema(request=ThingSerializer, responses={201: ThingSerializer})


def _create(request: Request) -> Response:
    if GATE.fail_next:
        GATE.fail_next = False
        raise InsufficientCredits("Not enough credits.")
    organisation = Organisation.objects.create(name=request.data["name"])
    return Response({"id": organisation.pk, "name": organisation.name}, status=201)


class ThingsApi(APIView):
    @thing_schema
    @idempotent()
    def post(self, request: Request) -> Response:
        return _create(request)


class OtherThingsApi(APIView):
    @thing_schema
    @idempotent()
    def post(self, request: Request) -> Response:
        return _create(request)


class StrictThingsApi(APIView):
    @idempotent(required=True)
    @thing_schema
    def post(self, request: Request) -> Response:
        return _create(request)


class OpenThingsApi(APIView):
    permission_classes = [AllowAny]

    @thing_schema
    @idempotent()
    def post(self, request: Request) -> Response:
        return _create(request)


class SlowThingsApi(APIView):
    @thing_schema
    @idempotent()
    def post(self, request: Request) -> Response:
        GATE.entered.set()
        if not GATE.release.wait(timeout=10):
            raise RuntimeError("the test never released the gate")
        return _create(request)


urlpatterns = [
    path("api/v1/auth/csrf/", CsrfApi.as_view()),
    path("api/things/", ThingsApi.as_view()),
    path("api/other-things/", OtherThingsApi.as_view()),
    path("api/strict-things/", StrictThingsApi.as_view()),
    path("api/open-things/", OpenThingsApi.as_view()),
    path("api/slow-things/", SlowThingsApi.as_view()),
]
