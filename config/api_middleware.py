"""Errors under ``/api/`` leave in the error format whatever ``DEBUG`` is (docs/api.md, Errors).

DRF renders the errors of its own views (``config.api.exception_handler``), but some errors
never reach a view: a URL no view matched, a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, a crash
in a middleware. Django answers those with its HTML pages (with ``DEBUG`` on, the debug page
listing every URL pattern or the traceback), and ``handler404``/``handler500`` are not used at
all while ``DEBUG`` is on. This middleware, first in ``MIDDLEWARE``, turns any non-JSON error
response under ``/api/`` into ``{"error": {"code", "message", "fields"}}`` with its status.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.log import log_response

from config.api import error_body, is_api, request_too_large_message

_BY_STATUS = {
    400: ("bad_request", "Bad request."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
}


def _is_json(response: HttpResponse) -> bool:
    return str(response.get("Content-Type", "")).startswith("application/json")


def api_error_response(request: HttpRequest, status: int) -> JsonResponse:
    """The error format for a bare ``status`` (the response had no body of ours)."""
    if status == 405:
        code, message = "method_not_allowed", f'Method "{request.method}" not allowed.'
    elif status == 413:
        code, message = "request_too_large", request_too_large_message()
    elif status >= 500:
        code, message = "server_error", "Internal server error."
    else:
        code, message = _BY_STATUS.get(status, ("bad_request", "Bad request."))
    return JsonResponse(error_body(code, message), status=status)


class ApiErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not is_api(request) or response.status_code < 400 or _is_json(response):
            return response
        answer = api_error_response(request, response.status_code)
        if response.has_header("Allow"):
            answer["Allow"] = response["Allow"]
        return answer

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # Django would answer a body over DATA_UPLOAD_MAX_MEMORY_SIZE with a 400 (it is a
        # SuspiciousOperation); it is a body too large, as the ASGI check in front says (413).
        if is_api(request) and isinstance(exception, RequestDataTooBig):
            answer = api_error_response(request, 413)
            log_response("%s: %s", "Request body too large", request.path, response=answer)
            return answer
        return None
