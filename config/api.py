"""API glue shared by every app: the error format and pagination (see API.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import (
    BooleanField,
    Expression,
    F,
    Field,
    GeneratedField,
    IntegerField,
    Model,
    Q,
    QuerySet,
    Value,
)
from django.db.models.sql.compiler import SQLCompiler
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views import defaults
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import BasePagination, PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import ServiceError
from config.statements import compiled


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class _NumberedPages(Pagination):
    """KeysetPagination's ``?page=N``: the old pages, in the keyset response's shape."""

    def get_paginated_response(self, data: Any) -> Response:
        page = super().get_paginated_response(data).data
        return Response(
            {
                "count": page["count"],
                "count_is_capped": False,
                **{key: page[key] for key in ("next", "previous", "results")},
            }
        )


@dataclass(frozen=True)
class _SortKey:
    name: str  # a field's attname or an annotation, as in order_by()
    descending: bool
    field: Field[Any, Any]  # parses the key's value back out of a cursor

    @property
    def spec(self) -> str:
        return f"-{self.name}" if self.descending else self.name


@dataclass(frozen=True)
class _Position:
    values: list[Any]  # the sort keys of one row, the last one its pk
    before: bool  # the page is the rows before it (previous) instead of after (next)


class KeysetPagination(BasePagination):
    """Pages by keyset (a cursor) over a ``KeysetQuery``'s own ``order_by``, however many keys.

    The ordering must end with the pk (``id`` or ``-id``) and every key must be a non-null
    field or annotation (coalesce a nullable one). A cursor is the signed sort key values of
    the row next to the page, and which side of it the page is: the next page is the rows
    after the last one shown, ``(a, b, id) > (x, y, z)`` when all keys go the same way (an
    index on the keys seeks straight there) or the expanded ``a > x OR (a = x AND …)`` with
    ``a >= x`` beside it (the index seeks on the first key) when they don't; the previous page
    is the rows before the first one, read in the reverse order and turned round. Each page
    is one statement whatever its depth, and rows inserted or deleted between pages neither
    repeat nor skip the others.

    ``count`` is exact while it is at most ``KEYSET_COUNT_CAP`` (a ``COUNT`` over a ``LIMIT``
    of cap + 1, so it stops after that many matching rows), else it is the cap and
    ``count_is_capped`` is true; a first page that holds the whole set counts itself. So a page
    is at most two statements, each compiled once per shape of the query and then run with
    each request's values (config.statements: the ORM built and compiled both on every request,
    a third of what Django added to a catalog page). ``?page=N`` (``is_numbered``) is still
    answered through ``Pagination`` (an exact ``COUNT(*)`` and ``OFFSET``, slower the deeper it
    goes, over the queryset) for the clients that send it.
    """

    cursor_query_param = "cursor"
    page_query_param = "page"
    page_size_query_param = "page_size"
    max_page_size = 500
    salt = "config.api.KeysetPagination"
    legacy: _NumberedPages | None = None

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any] | None:
        """``?page=N`` only (``is_numbered``): the old pages, through ``Pagination``."""
        self.request = request
        self.legacy = _NumberedPages()
        self.legacy.max_page_size = self.max_page_size
        return self.legacy.paginate_queryset(queryset, request, view)

    def is_numbered(self, request: Request) -> bool:
        """Whether ``request`` asks for a numbered page (``paginate_queryset``) instead of a
        cursor's (``paginate_keyset``); both together is a 400 naming ``cursor``."""
        if self.page_query_param not in request.query_params:
            return False
        if self.cursor_query_param in request.query_params:
            raise _bad_cursor("send either cursor or page, not both")
        return True

    def paginate_keyset(self, query: KeysetQuery, request: Request) -> list[dict[str, Any]]:
        """The page of ``query`` that ``request``'s cursor and ``page_size`` ask for, its rows
        as ``{column: value}``; the page and the count run as statements compiled once per
        shape (config.statements)."""
        self.request = request
        self.legacy = None
        keys = _keys_of(query)
        position = self._position(keys)
        page_size = self._page_size(request)
        rows = self._rows(query, keys, position, page_size + 1)
        more = len(rows) > page_size
        rows = rows[:page_size]
        before = position is not None and position.before
        if before:
            rows.reverse()
        self.next_cursor = self._next(keys, rows, position, more)
        self.previous_cursor = self._previous(keys, rows, position, more)
        self.to_first = before and not rows  # the rows before the cursor are gone
        if position is None and not more:
            self.count, self.count_is_capped = len(rows), False
        else:
            self.count, self.count_is_capped = _count_capped(query, _count_cap())
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        if self.legacy is not None:
            return self.legacy.get_paginated_response(data)
        url = self.request.build_absolute_uri()
        first = remove_query_param(url, self.cursor_query_param)
        return Response(
            {
                "count": self.count,
                "count_is_capped": self.count_is_capped,
                "next": first if self.to_first else self._link(url, self.next_cursor),
                "previous": self._link(url, self.previous_cursor),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["count", "count_is_capped", "next", "previous", "results"],
            "properties": {
                "count": {
                    "type": "integer",
                    "description": "How many match: exact up to the cap (KEYSET_COUNT_CAP, "
                    "1000 by default), else the cap.",
                },
                "count_is_capped": {
                    "type": "boolean",
                    "description": "true: more than `count` match (the count stopped at "
                    "the cap); false: `count` is exact.",
                },
                "next": {**link, "description": "the next page (carries `cursor`)"},
                "previous": {**link, "description": "the previous page (carries `cursor`)"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque: take it from `next` or `previous`; without it, the "
                "first page.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Rows per page, at most {self.max_page_size}.",
                "schema": {"type": "integer"},
            },
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "Deprecated: numbered pages (exact count, OFFSET); use `cursor`.",
                "schema": {"type": "integer"},
                "deprecated": True,
            },
        ]

    def _page_size(self, request: Request) -> int:
        """As ``Pagination``'s: ``page_size`` cut to the maximum; a bad one gets the default."""
        paginator = Pagination()
        paginator.max_page_size = self.max_page_size
        return int(paginator.get_page_size(request) or paginator.page_size or 1)

    def _rows(
        self,
        query: KeysetQuery,
        keys: list[_SortKey],
        position: _Position | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        if position is None:
            first = compiled(("page", limit, query.shape), query.values, query.build_page(limit))
            return first.rows(query.values)
        names = [f"keyset {index}" for index in range(len(keys))]
        values = {**query.values, **dict(zip(names, position.values, strict=True))}
        if position.before:
            keys = [_SortKey(k.name, not k.descending, k.field) for k in keys]

        def build(given: Mapping[str, Any]) -> QuerySet[Any]:
            queryset = query.build(given)
            if position.before:
                queryset = queryset.order_by(*(key.spec for key in keys))
            return queryset.filter(_after(keys, [given[name] for name in names]))[:limit]

        shape = ("after", position.before, limit, query.shape)
        return compiled(shape, values, build).rows(values)

    def _next(
        self, keys: list[_SortKey], rows: list[Any], position: _Position | None, more: bool
    ) -> str | None:
        # After a page read backwards there is at least the row its cursor was made from.
        if not rows or not (more or (position is not None and position.before)):
            return None
        return self._encode(keys, _Position(_values(keys, rows[-1]), before=False))

    def _previous(
        self, keys: list[_SortKey], rows: list[Any], position: _Position | None, more: bool
    ) -> str | None:
        if position is None:
            return None
        if position.before:
            return self._encode(keys, _Position(_values(keys, rows[0]), True)) if more else None
        # Read forwards from a cursor: the rows up to it came before (it may be past the end).
        values = _values(keys, rows[0]) if rows else position.values
        return self._encode(keys, _Position(values, before=True))

    def _link(self, url: str, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        return replace_query_param(url, self.cursor_query_param, cursor)

    def _encode(self, keys: list[_SortKey], position: _Position) -> str:
        payload = {
            "o": [key.spec for key in keys],
            "v": [_json_value(value) for value in position.values],
            "b": position.before,
        }
        return signing.dumps(payload, salt=self.salt, compress=False)

    def _position(self, keys: list[_SortKey]) -> _Position | None:
        token = self.request.query_params.get(self.cursor_query_param)
        if token is None:
            return None
        try:
            payload = signing.loads(token, salt=self.salt)
        except signing.BadSignature:
            raise _bad_cursor(
                "not a cursor this API made (take it from next or previous)"
            ) from None
        if not isinstance(payload, dict) or payload.get("o") != [key.spec for key in keys]:
            raise _bad_cursor("the cursor is for another ordering; start again without it")
        values = payload.get("v")
        if not isinstance(values, list) or len(values) != len(keys):
            raise _bad_cursor("not a cursor this API made (take it from next or previous)")
        try:
            parsed = [key.field.to_python(value) for key, value in zip(keys, values, strict=True)]
        except DjangoValidationError:
            raise _bad_cursor(
                "not a cursor this API made (take it from next or previous)"
            ) from None
        if any(value is None for value in parsed):
            raise _bad_cursor("not a cursor this API made (take it from next or previous)")
        return _Position(parsed, before=payload.get("b") is True)


def _bad_cursor(message: str) -> serializers.ValidationError:
    return serializers.ValidationError({KeysetPagination.cursor_query_param: [message]})


def _count_cap() -> int:
    return int(settings.KEYSET_COUNT_CAP)


def _count_capped(query: KeysetQuery, cap: int) -> tuple[int, bool]:
    """``(min(count, cap), count > cap)`` in one statement that reads at most ``cap + 1``."""
    found = compiled(query.shape, query.values, query.build, count_limit=cap + 1).scalar(
        query.values
    )
    return min(found, cap), found > cap


@dataclass(frozen=True)
class KeysetQuery:
    """What ``KeysetPagination.paginate_keyset`` pages: a queryset (``values()`` of every
    column the caller needs and every sort key, ordered as ``_sort_keys`` requires) built by
    ``build`` from ``values``; ``shape`` is everything else that changes its SQL."""

    shape: Hashable
    values: Mapping[str, Any]
    build: Callable[[Mapping[str, Any]], QuerySet[Any]]

    def build_page(self, limit: int) -> Callable[[Mapping[str, Any]], QuerySet[Any]]:
        return lambda values: self.build(values)[:limit]


_keys: dict[Hashable, list[_SortKey]] = {}


def _keys_of(query: KeysetQuery) -> list[_SortKey]:
    """The sort keys of ``query``'s shape, read once from a queryset built with its values."""
    keys = _keys.get(query.shape)
    if keys is None:
        keys = _sort_keys(query.build(query.values))
        if len(_keys) >= 512:
            _keys.clear()
        _keys[query.shape] = keys
    return keys


def _sort_keys(queryset: QuerySet[Any]) -> list[_SortKey]:
    specs = [spec for spec in queryset.query.order_by if isinstance(spec, str)]
    if not specs or len(specs) != len(queryset.query.order_by):
        raise ImproperlyConfigured("KeysetPagination needs order_by() with names")
    model: type[Model] = queryset.model
    pk = model._meta.pk
    assert pk is not None
    keys = []
    for spec in specs:
        name = spec.removeprefix("-")
        name = pk.attname if name == "pk" else name
        annotation = queryset.query.annotations.get(name)
        found: Any = model._meta.get_field(name) if annotation is None else annotation.output_field
        if isinstance(found, GeneratedField):
            found = found.output_field
        if not isinstance(found, Field):
            raise ImproperlyConfigured(f"KeysetPagination can't order by {name}")
        keys.append(_SortKey(name, spec.startswith("-"), found))
    if keys[-1].name != pk.attname:
        raise ImproperlyConfigured("KeysetPagination needs an ordering that ends with the pk")
    return keys


def _values(keys: Sequence[_SortKey], row: Mapping[str, Any]) -> list[Any]:
    values = [row[key.name] for key in keys]
    if any(value is None for value in values):
        raise ImproperlyConfigured("KeysetPagination needs non-null sort keys (coalesce them)")
    return values


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bool | int | str):
        return value
    return str(value)


def _after(keys: list[_SortKey], values: list[Any]) -> Q | Expression:
    """The rows strictly after ``values`` in the order of ``keys``.

    One row comparison whenever it can be: as it is when every key goes the first key's way;
    else with each integer key that goes the other way negated (``price, -reliability, -id``
    after ``(x, y, z)`` is ``(price, -reliability, -id) > (x, -y, -z)``), which PostgreSQL
    still seeks by on an index led by the first key and estimates by it. Only a key that
    can't be negated (a date) against the first key's direction needs the expanded ``OR``,
    whose estimate is poor (the planner multiplies the bound by the ``OR``).
    """
    first = keys[0]
    if all(key.descending == first.descending or _negatable(key) for key in keys):
        left, right = [], []
        for key, value in zip(keys, values, strict=True):
            flip = key.descending != first.descending
            left.append(-F(key.name) if flip else F(key.name))
            right.append(Value(-value if flip else value, output_field=key.field))
        return _RowCompare(left, "<" if first.descending else ">", right)
    disjuncts = []
    for index, key in enumerate(keys):
        equal = {keys[j].name: values[j] for j in range(index)}
        beyond = {f"{key.name}__{'lt' if key.descending else 'gt'}": values[index]}
        disjuncts.append(Q(**equal, **beyond))
    seek = Q(**{f"{first.name}__{'lte' if first.descending else 'gte'}": values[0]})
    return seek & reduce(or_, disjuncts)


def _negatable(key: _SortKey) -> bool:
    return isinstance(key.field, IntegerField)


class _RowCompare(Expression):
    """``(a, b, c) < (x, y, z)``: SQL's row comparison, which a btree index on ``(a, b, c)``
    (or one scanned backwards) takes as one range."""

    conditional = True

    def __init__(self, left: list[Any], operator: str, right: list[Any]) -> None:
        super().__init__(output_field=BooleanField())
        self.left, self.operator, self.right = left, operator, right

    def get_source_expressions(self) -> list[Any]:
        return [*self.left, *self.right]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.left, self.right = list(exprs[: len(self.left)]), list(exprs[len(self.left) :])

    def as_sql(self, compiler: SQLCompiler, connection: Any) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        for expression in self.get_source_expressions():
            sql, found = compiler.compile(expression)
            parts.append(sql)
            params.extend(found)
        left, right = parts[: len(self.left)], parts[len(self.left) :]
        return f"({', '.join(left)}) {self.operator} ({', '.join(right)})", params


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
