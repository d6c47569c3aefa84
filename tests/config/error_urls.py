"""The real URLs plus test-only views that raise each kind of error (``pytest.mark.urls``)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import Conflict, ServiceError
from config.urls import handler404, handler500
from config.urls import urlpatterns as real_urlpatterns

__all__ = ["handler404", "handler500", "urlpatterns"]


class ServiceErrorApi(APIView):
    def get(self, request: Request) -> Response:
        raise ServiceError("Something is off.", fields={"thing": ["Off."]})


class ConflictApi(APIView):
    def get(self, request: Request) -> Response:
        raise Conflict("Someone else got there first.", code="taken")


class DjangoPermissionDeniedApi(APIView):
    def get(self, request: Request) -> Response:
        raise DjangoPermissionDenied


class DjangoNotFoundApi(APIView):
    def get(self, request: Request) -> Response:
        raise Http404


class CrashApi(APIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("a bug")


urlpatterns = [
    *real_urlpatterns,
    path("api/test/service-error/", ServiceErrorApi.as_view()),
    path("api/test/conflict/", ConflictApi.as_view()),
    path("api/test/django-permission-denied/", DjangoPermissionDeniedApi.as_view()),
    path("api/test/django-not-found/", DjangoNotFoundApi.as_view()),
    path("api/test/crash/", CrashApi.as_view()),
]
