"""Serving a blob's bytes with single ranges (``bytes=a-b``, ``a-``, ``-n``): the renter's
download, an agent's fetch, a job's output."""

from __future__ import annotations

import re

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.utils.http import content_disposition_header

from blobs.models import Blob
from blobs.store import stream_read
from config.api import error_body

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeUnsatisfiable(Exception):
    pass


def range_parse(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single range; None for the whole (no or an unusable header).

    A syntactically bad or multi-range header is ignored (the whole body, as RFC 9110 allows);
    a range that starts past the end is unsatisfiable (416).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last n bytes
        if int(last) == 0 or size == 0:
            raise RangeUnsatisfiable()
        return max(size - int(last), 0), size - 1
    if last != "" and int(last) < int(first):
        return None
    if int(first) >= size:
        raise RangeUnsatisfiable()
    return int(first), size - 1 if last == "" else min(int(last), size - 1)


def blob_response(
    request: HttpRequest, blob: Blob, *, filename: str | None = None
) -> HttpResponseBase:
    """200 with the whole blob, 206 with one range, 416 past the end; HEAD sends no body."""
    try:
        wanted = range_parse(request.headers.get("Range"), blob.size)
    except RangeUnsatisfiable:
        refused = JsonResponse(
            error_body("range_not_satisfiable", f"the blob has {blob.size} bytes"), status=416
        )
        refused["Content-Range"] = f"bytes */{blob.size}"
        return refused
    start, end = wanted if wanted is not None else (0, blob.size - 1)
    length = end - start + 1 if blob.size else 0
    response: HttpResponseBase
    if request.method == "HEAD" or length == 0:
        response = HttpResponse(status=206 if wanted else 200)
    else:
        response = StreamingHttpResponse(
            stream_read(blob.storage_name, start=start, end=end), status=206 if wanted else 200
        )
    response["Content-Type"] = "application/octet-stream"
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = f'"{blob.sha256}"'
    if wanted is not None:
        response["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
    if filename is not None:
        response["Content-Disposition"] = content_disposition_header(True, filename) or ""
    return response
