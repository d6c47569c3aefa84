"""API glue shared by every app: the error format and pagination (see API.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views import defaults
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import ServiceError


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


# Money columns are 64-bit integers; anything larger is refused as input, never overflowed.
MICROS_MAX = 2**63 - 1
_FORM_INTEGER_DIGITS = 19


class MicrosField(serializers.IntegerField):
    """Every money input (a field ending ``_micros``): a JSON integer, ``0 ≤ n ≤ 2**63 - 1``.

    DRF's ``IntegerField`` takes ``"1000000"``, ``1500000.0`` and ``true`` as integers and has
    no upper bound, so a float or a string slipped through and ``10**30`` overflowed the column
    (a 500). This one refuses all of them with 400 and the field named. Only a form or a query
    string, where every value is text, may send the digits as a string.
    """

    default_error_messages = {
        "not_integer": "must be a whole number of micro-credits, as a JSON integer (got {kind})",
    }

    def __init__(self, *, min_value: int = 0, max_value: int = MICROS_MAX, **kwargs: Any) -> None:
        super().__init__(min_value=min_value, max_value=min(max_value, MICROS_MAX), **kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        if isinstance(data, str) and self._is_text_input() and _is_form_integer(data):
            return int(data)
        self.fail("not_integer", kind=_json_kind(data))
        raise AssertionError("fail() raises")  # pragma: no cover - for the type checker

    def _is_text_input(self) -> bool:
        return isinstance(getattr(self.root, "initial_data", None), QueryDict)


def _is_form_integer(text: str) -> bool:
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit() and len(digits) <= _FORM_INTEGER_DIGITS


def _json_kind(data: Any) -> str:
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, float):
        return "a number with a fraction or exponent"
    if isinstance(data, str):
        return "a string"
    if data is None:
        return "null"
    return "a list" if isinstance(data, list) else "an object"


def _first_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if key == "non_field_errors" else f"{key}: {inner}"
    return str(detail)


def _code_for(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    return str(exc.default_code)


def field_messages(value: Any, where: str = "") -> list[str]:
    """One field's errors as a flat list of message strings, whatever shape they came in.

    DRF nests the errors of a list or an object field (``files: [{}, {"path": [...]}]``) and
    some services gave a bare string or a number; ``fields`` always maps a field to a list of
    sentences (docs/api.md, Errors), so nested ones say where they are (``item 2, path: ...``).
    """
    if isinstance(value, dict):
        return [
            message
            for key, inner in value.items()
            for message in field_messages(inner, _where(where, _label(key)))
        ]
    if isinstance(value, list | tuple):
        if all(not isinstance(item, dict | list | tuple) for item in value):
            return [_placed(where, str(item)) for item in value]
        return [
            message
            for index, inner in enumerate(value, start=1)
            for message in field_messages(inner, _where(where, f"item {index}"))
        ]
    return [_placed(where, str(value))]


def _label(key: Any) -> str:
    # DRF keys a list field's item errors by index (from 0); non_field_errors name no field.
    if isinstance(key, int):
        return f"item {key + 1}"
    return "" if key == "non_field_errors" else str(key)


def _where(where: str, part: str) -> str:
    return f"{where}, {part}" if where and part else where or part


def _placed(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    messages = {str(name): field_messages(value) for name, value in (fields or {}).items()}
    return {
        "error": {
            "code": code,
            "message": message,
            "fields": {name: found for name, found in messages.items() if found},
        }
    }


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every error as ``{"error": {"code", "message", "fields"}}``."""
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("request_too_large", request_too_large_message()),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    fields: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        fields = {k: v for k, v in exc.detail.items() if k != "non_field_errors"}
    response.data = error_body(_code_for(exc), _first_message(exc.detail), fields)
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
        response.data["error"]["code"] = "throttled"
    return response


def validated(serializer_class: type[serializers.Serializer[Any]], request: Request) -> Any:
    """Parse ``request.data`` with ``serializer_class``; a 400 with field errors if it fails."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def request_too_large_message() -> str:
    """What a 413 for the whole body says: the general limit (docs/api.md, Size limits)."""
    return f"the request body is larger than {settings.REQUEST_MAX_BODY_BYTES} bytes"


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: URLs no view matched get the error format under /api/, HTML elsewhere."""
    if is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an unhandled exception, in the error format under /api/."""
    if is_api(request):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    return defaults.server_error(request)


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string", "description": "Stable snake_case code."},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    "description": "Each bad field's messages (every bad field at once) for "
                    "bad input; empty otherwise.",
                },
            },
        }
    },
}


def schema_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation documents the error format."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    error = {
        "description": "An error; see `code`.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("4XX", error)
    return result
