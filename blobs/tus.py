"""The tus 1.0.0 headers (core, creation, termination, expiration): parsed here once, so the
renters' and the agents' upload views only call the engine (blobs.services.uploads)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.http import HttpResponse
from django.utils.http import http_date

from blobs.models import Upload
from config.errors import PreconditionFailed, ValidationFailed

VERSION = "1.0.0"
EXTENSIONS = "creation,termination,expiration"
CONTENT_TYPE = "application/offset+octet-stream"


def resumable_check(headers: Mapping[str, str]) -> None:
    if headers.get("Tus-Resumable") != VERSION:
        raise PreconditionFailed(
            f"this server speaks tus {VERSION}: send Tus-Resumable: {VERSION}",
            code="tus_version",
            fields={"Tus-Resumable": [f"Must be {VERSION}."]},
        )


def _integer(headers: Mapping[str, str], name: str) -> int:
    text = headers.get(name, "").strip()
    if not text.isdigit() or len(text) > 19:
        raise ValidationFailed(
            f"{name} must be a whole number of bytes", fields={name: ["A whole number."]}
        )
    return int(text)


def metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """``Upload-Metadata: key b64,key b64`` as text values."""
    found: dict[str, str] = {}
    for pair in filter(
        None, (item.strip() for item in headers.get("Upload-Metadata", "").split(","))
    ):
        key, _, value = pair.partition(" ")
        try:
            found[key] = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValidationFailed(
                f"Upload-Metadata {key} is not base64 of UTF-8 text",
                fields={"Upload-Metadata": [f"{key}: not base64 of UTF-8 text."]},
            ) from None
    return found


@dataclass(frozen=True)
class Creation:
    length: int
    metadata: dict[str, str]

    def required(self, key: str) -> str:
        value = self.metadata.get(key)
        if value is None:
            raise ValidationFailed(
                f"Upload-Metadata needs {key}", fields={"Upload-Metadata": [f"{key} is missing."]}
            )
        return value


def creation(headers: Mapping[str, str]) -> Creation:
    resumable_check(headers)
    return Creation(length=_integer(headers, "Upload-Length"), metadata=metadata(headers))


@dataclass(frozen=True)
class Patch:
    offset: int
    length: int


def patch(headers: Mapping[str, str]) -> Patch:
    resumable_check(headers)
    if headers.get("Content-Type", "").split(";")[0].strip() != CONTENT_TYPE:
        raise ValidationFailed(
            f"a PATCH body is {CONTENT_TYPE}", fields={"Content-Type": [f"Must be {CONTENT_TYPE}."]}
        )
    return Patch(
        offset=_integer(headers, "Upload-Offset"), length=_integer(headers, "Content-Length")
    )


def _expires(at: datetime) -> str:
    return http_date(at.timestamp())


def options_response() -> HttpResponse:
    response = HttpResponse(status=204)
    response["Tus-Resumable"] = VERSION
    response["Tus-Version"] = VERSION
    response["Tus-Extension"] = EXTENSIONS
    response["Tus-Max-Size"] = str(settings.BLOB_UPLOAD_MAX_BYTES)
    return response


def upload_headers(response: HttpResponse, upload: Upload, *, location: str | None = None) -> None:
    response["Tus-Resumable"] = VERSION
    response["Upload-Offset"] = str(upload.offset)
    response["Upload-Length"] = str(upload.length)
    response["Upload-Expires"] = _expires(upload.expires_at)
    response["Cache-Control"] = "no-store"
    if location is not None:
        response["Location"] = location
