"""The blobs REST API (docs/api.md, "Blobs and uploads"): tus uploads, holdings, downloads and
the agents' token fetch. Thin: tus headers are parsed by ``blobs.tus``, the work is the engine's
(``blobs.services.uploads``); each write is one durable transaction (``durable_call``), and a
digest mismatch is raised after it committed the upload's failure."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from blobs import tus
from blobs.http import blob_response
from blobs.models import Blob, BlobHolding, Upload, UploadStatus
from blobs.selectors import holding_of, holdings_of
from blobs.serializers import HoldingSerializer, QuotaSerializer, UploadSerializer
from blobs.services.holdings import holding_delete
from blobs.services.uploads import (
    digest_mismatch_error,
    quota_used,
    upload_abort,
    upload_create,
    upload_locked,
    upload_receive,
)
from blobs.tokens import TokenRefused, blob_token_check
from blobs.urls_for_agents import FETCH_PURPOSE
from config.errors import NotFound
from config.transactions import durable_call

RENTER_UPLOADS = "/api/v1/uploads/"


def upload_answer(upload: Upload, *, code: int, location: str | None = None) -> Response:
    """An upload's tus headers and JSON; a failed upload is the digest_mismatch refusal."""
    if upload.status == UploadStatus.FAILED:
        raise digest_mismatch_error(upload)
    body = UploadSerializer(upload).data if code != status.HTTP_204_NO_CONTENT else None
    response = Response(body, status=code)
    tus.upload_headers(response, upload, location=location)
    return response


def patch_apply(request: Request, upload_id: uuid.UUID, *, user_id: int) -> Upload:
    # Someone else's upload is 404 whatever the headers say.
    if not Upload.objects.filter(pk=upload_id, user_id=user_id, scope="").exists():
        raise NotFound("no such upload")
    given = tus.patch(request.headers)

    def receive() -> Upload:
        upload = upload_locked(upload_id, user_id=user_id, scope=None)
        return upload_receive(
            upload, offset=given.offset, body=request._request, length=given.length
        )

    return durable_call(receive)


class UploadsApi(APIView):
    """tus creation (POST) and discovery (OPTIONS)."""

    @extend_schema(exclude=True)
    def options(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return tus.options_response()

    @extend_schema(request=None, responses={201: UploadSerializer})
    def post(self, request: Request) -> Response:
        given = tus.creation(request.headers)
        user = request_user(request)
        upload = durable_call(
            upload_create,
            user_id=user.pk,
            sha256=given.required("sha256"),
            length=given.length,
            name=given.metadata.get("filename", "")[:255],
        )
        return upload_answer(
            upload, code=status.HTTP_201_CREATED, location=f"{RENTER_UPLOADS}{upload.pk}/"
        )


class UploadDetailApi(APIView):
    """tus HEAD (where to resume), PATCH (the next bytes), DELETE (termination)."""

    @extend_schema(exclude=True)
    def options(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return tus.options_response()

    @extend_schema(responses={200: OpenApiResponse(description="Upload-Offset, Upload-Length")})
    def head(self, request: Request, upload_id: uuid.UUID) -> Response:
        user = request_user(request)
        upload = Upload.objects.filter(pk=upload_id, user_id=user.pk, scope="").first()
        if upload is None:
            raise NotFound("no such upload")
        response = Response(status=status.HTTP_200_OK)
        tus.upload_headers(response, upload)
        return response

    @extend_schema(request=None, responses={204: None})
    def patch(self, request: Request, upload_id: uuid.UUID) -> Response:
        upload = patch_apply(request, upload_id, user_id=request_user(request).pk)
        return upload_answer(upload, code=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, upload_id: uuid.UUID) -> Response:
        user_id = request_user(request).pk
        durable_call(lambda: upload_abort(upload_locked(upload_id, user_id=user_id, scope=None)))
        response = Response(status=status.HTTP_204_NO_CONTENT)
        response["Tus-Resumable"] = tus.VERSION
        return response


class BlobListApi(generics.ListAPIView[BlobHolding]):
    serializer_class = HoldingSerializer

    def get_queryset(self) -> Any:
        return holdings_of(request_user(self.request))


class BlobQuotaApi(APIView):
    @extend_schema(responses={200: QuotaSerializer})
    def get(self, request: Request) -> Response:
        held, sending = quota_used(request_user(request).pk)
        quota = {
            "used_bytes": held,
            "limit_bytes": settings.BLOB_QUOTA_BYTES,
            "uploading_bytes": sending,
        }
        return Response(QuotaSerializer(quota).data)


class BlobDetailApi(APIView):
    @extend_schema(responses={200: HoldingSerializer})
    def get(self, request: Request, sha256: str) -> Response:
        holding = holding_of(request_user(request), sha256)
        return Response(HoldingSerializer(holding).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, sha256: str) -> Response:
        durable_call(holding_delete, user_id=request_user(request).pk, sha256=sha256)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BlobContentApi(APIView):
    """The bytes of a blob the user holds; Range for one part of it."""

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, sha256: str) -> Any:
        holding = holding_of(request_user(request), sha256)
        return blob_response(request._request, holding.blob)


class BlobFetchApi(APIView):
    """An agent's fetch: the signed token is the grant (one blob, purpose fetch, a TTL)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    # Agents fetch many inputs at once; the token, not a rate, is the limit.
    throttle_classes: list[Any] = []

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, token: str) -> Any:
        try:
            grant = blob_token_check(token, purpose=FETCH_PURPOSE)
        except TokenRefused:
            raise NotFound("this fetch URL is unknown or expired") from None
        blob = Blob.objects.filter(sha256=grant.sha256).first()
        if blob is None:
            raise NotFound("this fetch URL is unknown or expired")
        return blob_response(request._request, blob)
