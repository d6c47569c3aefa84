"""``Idempotency-Key`` for POST views that create money-moving things (jobs, payments, payouts).

Usage, on a DRF handler method (``APIView.post`` or a viewset's ``create``/action)::

    from accounts.idempotency import idempotent

    class JobListApi(APIView):
        @extend_schema(request=JobInput, responses={201: JobOutput})
        @idempotent()
        def post(self, request: Request) -> Response: ...

Semantics (see docs/api.md, "Idempotency"):

- The key is scoped to the authenticated user and the endpoint (method + path).
- The first request inserts a row with the body's SHA-256 and state ``processing``; the
  unique constraint decides the winner, so there is no check-then-act. The winner runs the
  view and stores its status and body.
- A repeat with the same key and body gets the stored response (same status) with the header
  ``Idempotent-Replayed: true``; with another body, 422 ``idempotency_key_reused``; while the
  first is still running, 409 ``idempotency_key_in_progress``.
- If the view raises (validation, a ServiceError such as 402), the row is deleted and the
  error goes out as usual, so a corrected retry with the same key can proceed. Views must
  therefore raise only before their side effect commits, which is what services in
  ``transaction.atomic`` give for free. A returned 5xx response is not stored either.
- A row left ``processing`` by a crashed process is reclaimed by the next repeat after
  ``IDEMPOTENCY_PROCESSING_TIMEOUT_SECONDS``. Rows are kept ``IDEMPOTENCY_KEY_TTL_SECONDS``
  (at least) and then pruned by a periodic task.

The decorator does not open a transaction around the view. A view decorated ``durable``
above ``idempotent`` (the job submit) runs the claim in its transaction, so the claim, the
work and the stored response commit together.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import IdempotencyRecord, IdempotencyState, User
from config.errors import Conflict, Unprocessable, ValidationFailed

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX_LENGTH = 255
# A concurrent failure can delete the row between our insert attempt and our read; a few
# rounds settle it, and a key that flips more often than that is fought over: 409.
_CLAIM_ATTEMPTS = 3

P = ParamSpec("P")
V = TypeVar("V", bound=APIView)


def idempotent(
    *, required: bool = False
) -> Callable[
    [Callable[Concatenate[V, Request, P], Response]],
    Callable[Concatenate[V, Request, P], Response],
]:
    """Make a DRF POST handler honour ``Idempotency-Key`` (see the module docstring).

    ``required=True`` refuses requests without the header (400 ``idempotency_key_required``);
    by default a request without it runs normally, unprotected.
    """

    def decorate(
        handler: Callable[Concatenate[V, Request, P], Response],
    ) -> Callable[Concatenate[V, Request, P], Response]:
        @functools.wraps(handler)
        def wrapper(view: V, request: Request, *args: P.args, **kwargs: P.kwargs) -> Response:
            key = _key_of(request, required=required)
            if key is None:
                return handler(view, request, *args, **kwargs)
            user = _user_of(request)
            endpoint = _endpoint_of(request)
            fingerprint = _fingerprint_of(request)
            record, replay = idempotency_record_claim(
                user=user, endpoint=endpoint, key=key, fingerprint=fingerprint
            )
            if replay is not None:
                return replay
            try:
                response = handler(view, request, *args, **kwargs)
            except BaseException:
                # Inside a transaction that is going back (a durable view's), the claim goes
                # with it; the broken transaction could not run the release anyway.
                if not transaction.get_connection().needs_rollback:
                    idempotency_record_release(record=record)
                raise
            idempotency_record_complete(record=record, response=response)
            return response

        # functools.wraps shares the handler's ``kwargs`` dict (drf-spectacular and @action
        # keep state there); give the wrapper its own before annotating it.
        wrapper.kwargs = dict(getattr(handler, "kwargs", {}))  # type: ignore[attr-defined]
        annotated = extend_schema(parameters=[_schema_parameter(required)])(wrapper)
        return cast(Callable[Concatenate[V, Request, P], Response], annotated)

    return decorate


def idempotency_record_claim(
    *, user: User, endpoint: str, key: str, fingerprint: str
) -> tuple[IdempotencyRecord, Response | None]:
    """Insert the ``processing`` row, or answer from the row someone else inserted.

    Returns ``(record, None)`` when the caller owns the key and must run the view, or
    ``(record, response)`` with the stored first response. Raises 422 for another body and
    409 while the first request is still running.
    """
    for _ in range(_CLAIM_ATTEMPTS):
        now = timezone.now()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user=user, endpoint=endpoint, key=key, fingerprint=fingerprint, started_at=now
                )
            return record, None
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(user=user, endpoint=endpoint, key=key).first()
        if existing is None:
            continue  # the first request failed and let go of the key: try again
        if existing.fingerprint != fingerprint:
            raise Unprocessable(
                "This Idempotency-Key was already used with a different request body.",
                code="idempotency_key_reused",
            )
        if existing.state == IdempotencyState.COMPLETED:
            return existing, _replay(existing)
        if _reclaim_stale(existing, now=now):
            return existing, None
        break
    raise Conflict(
        "A request with this Idempotency-Key is still being processed; retry shortly.",
        code="idempotency_key_in_progress",
    )


def idempotency_record_complete(*, record: IdempotencyRecord, response: Response) -> None:
    """Store the first response, or let go of the key if there is nothing worth replaying."""
    if not isinstance(response, Response):
        idempotency_record_release(record=record)
        raise TypeError("@idempotent handlers must return a rest_framework Response")
    if response.status_code >= 500:
        idempotency_record_release(record=record)
        return
    # Store exactly what the client saw: the data as the JSON renderer encodes it.
    body = json.loads(JSONRenderer().render(response.data)) if response.data is not None else None
    IdempotencyRecord.objects.filter(
        pk=record.pk, state=IdempotencyState.PROCESSING, started_at=record.started_at
    ).update(
        state=IdempotencyState.COMPLETED,
        response_status=response.status_code,
        response_body=body,
        completed_at=timezone.now(),
    )


def idempotency_record_release(*, record: IdempotencyRecord) -> None:
    """Delete our ``processing`` row so that a retry with the same key runs the view again."""
    IdempotencyRecord.objects.filter(
        pk=record.pk, state=IdempotencyState.PROCESSING, started_at=record.started_at
    ).delete()


def idempotency_records_prune(*, now: datetime | None = None) -> int:
    """Delete rows older than ``IDEMPOTENCY_KEY_TTL_SECONDS``; returns how many went."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)
    deleted, _ = IdempotencyRecord.objects.filter(started_at__lt=cutoff).delete()
    return deleted


def _reclaim_stale(record: IdempotencyRecord, *, now: datetime) -> bool:
    """Take over a row whose request died mid-flight; the conditional UPDATE picks one winner.

    ``started_at`` doubles as the owner's ticket: after a takeover the crashed owner's late
    complete/release (filtered on its own ``started_at``) matches nothing.
    """
    cutoff = now - timedelta(seconds=settings.IDEMPOTENCY_PROCESSING_TIMEOUT_SECONDS)
    if record.started_at >= cutoff:
        return False
    won = IdempotencyRecord.objects.filter(
        pk=record.pk, state=IdempotencyState.PROCESSING, started_at=record.started_at
    ).update(started_at=now)
    record.started_at = now
    return won == 1


def _replay(record: IdempotencyRecord) -> Response:
    assert record.response_status is not None
    return Response(
        record.response_body, status=record.response_status, headers={REPLAYED_HEADER: "true"}
    )


def _key_of(request: Request, *, required: bool) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        if required:
            raise ValidationFailed(
                f"This endpoint requires an {HEADER} header.",
                code="idempotency_key_required",
                fields={HEADER: ["This header is required."]},
            )
        return None
    key = key.strip()
    if not key or len(key) > KEY_MAX_LENGTH:
        raise ValidationFailed(
            f"{HEADER} must be 1 to {KEY_MAX_LENGTH} characters.",
            code="invalid_idempotency_key",
            fields={HEADER: [f"Must be 1 to {KEY_MAX_LENGTH} characters."]},
        )
    return key


def _user_of(request: Request) -> User:
    # Keys are scoped per user; an anonymous request has no scope to put the key in.
    if not isinstance(request.user, User):
        raise exceptions.NotAuthenticated()
    return request.user


def _endpoint_of(request: Request) -> str:
    endpoint = f"{request.method} {request.path}"
    if len(endpoint) <= 255:
        return endpoint
    return "sha256:" + hashlib.sha256(endpoint.encode()).hexdigest()


def _fingerprint_of(request: Request) -> str:
    try:
        raw = request._request.body
    except RawPostDataException:
        # A multipart body was already parsed (the CSRF check reads request.POST); fall back
        # to a canonical form of what was parsed, files by their content.
        raw = _canonical(request.data)
    return hashlib.sha256(raw).hexdigest()


def _canonical(data: Any) -> bytes:
    def encode(value: Any) -> Any:
        if hasattr(value, "chunks"):
            digest = hashlib.sha256()
            for chunk in value.chunks():
                digest.update(chunk)
            value.seek(0)
            return {"file": value.name, "sha256": digest.hexdigest()}
        return str(value)

    if hasattr(data, "lists"):  # a QueryDict: keep every value of repeated fields
        # A form's CSRF token is masked afresh per page: it is not part of "the same request".
        data = {k: v for k, v in data.lists() if k != "csrfmiddlewaretoken"}
    return json.dumps(data, sort_keys=True, default=encode).encode()


def _schema_parameter(required: bool) -> OpenApiParameter:
    return OpenApiParameter(
        HEADER,
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=required,
        description=(
            "Makes this POST safe to retry: a repeat with the same key and body returns the "
            "first response; the same key with another body gets 422; a repeat while the "
            "first is still running gets 409. 1 to 255 characters, scoped to you and this "
            "endpoint, kept at least 24 hours."
        ),
    )
