"""Checks on a job's inputs before anything is written (pure; no database). Disk: marketplace.disk.

Inputs (docs/jobs.md, "Inputs") are references, not bytes: a digest the owner holds, or an
https URL the agent fetches and checks against the digest. Their shape, paths and URLs are
checked here; whether the owner holds a digest is the submit's (it needs the database). A URL
naming a loopback, private, link-local, multicast or reserved address (or ``localhost``) is
refused here as text; the agent checks the address it resolves to as well.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from django.conf import settings

from agent.protocol import MAX_URL_CHARS
from config.errors import ValidationFailed
from jobs.validation import path_clean, refusals_merge

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_INPUT_KEYS = {"path", "sha256", "url", "size"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A last label that is all digits or hex ("127.1", "2130706433", "0x7f000001") makes a
# resolver read the name as an IPv4 address; no real domain ends like that.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")


@dataclass(frozen=True)
class InputSpec:
    """One checked input: a held blob (``url`` None; its size is the store's) or a URL."""

    path: str
    sha256: str
    url: str | None = None
    size: int | None = None


def url_problem(url: str) -> str | None:
    """Why ``url`` may not be a job input's URL, or None when it may (see the module doc)."""
    if len(url) > MAX_URL_CHARS:
        return f"is longer than {MAX_URL_CHARS} characters"
    if _CONTROL.search(url) or " " in url:
        return "contains spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  a bad port raises ValueError here
    except ValueError:
        return "is not a valid URL"
    if parts.scheme != "https":
        return "must be an https:// URL"
    if "@" in parts.netloc:
        return "must not carry a user name or password"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "names no host"
    if host == "localhost" or host.endswith(".localhost"):
        return "must not name localhost"
    return _address_problem(host)


def _address_problem(host: str) -> str | None:
    if "%" in host:
        return "must not name a scoped IPv6 address"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
            return "names an IP address in a form that is not allowed; write it as a.b.c.d"
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    ):
        return "names a loopback, private, link-local, multicast or reserved address"
    return None


def inputs_check(raw: Sequence[object]) -> list[InputSpec]:
    """The inputs in typed form, every bad one named at once (``inputs[i].path`` ...; i from 0).

    Shape, paths (``path_clean``'s rules, no duplicates), digests and URLs; the count cap. A
    ``size`` is the renter's word for a URL input (a store input's size is the store's).
    """
    if len(raw) > settings.JOB_INPUTS_MAX_COUNT:
        raise ValidationFailed(
            f"a job has at most {settings.JOB_INPUTS_MAX_COUNT} inputs",
            code="too_many_inputs",
            fields={"inputs": [f"at most {settings.JOB_INPUTS_MAX_COUNT} inputs"]},
        )
    refusals: list[ValidationFailed] = []
    inputs: list[InputSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        try:
            spec = _input_check(index, item)
        except ValidationFailed as exc:
            refusals.append(exc)
            continue
        if spec.path in seen:
            where = f"inputs[{index}].path"
            refusals.append(
                ValidationFailed(
                    f"{where}: {spec.path} is given twice",
                    code="duplicate_path",
                    fields={where: [f"{spec.path} is given twice"]},
                )
            )
        seen.add(spec.path)
        inputs.append(spec)
    refusals.extend(_nesting_refusals(inputs))
    if refusals:
        raise refusals_merge(refusals)
    return inputs


def _nesting_refusals(inputs: list[InputSpec]) -> list[ValidationFailed]:
    """An input under another input's path ("a" and "a/b") can't be laid out: "a" can't be a
    file and a folder at once."""
    files = {spec.path for spec in inputs}
    refusals = []
    for index, spec in enumerate(inputs):
        inside = next((str(p) for p in PurePosixPath(spec.path).parents if str(p) in files), None)
        if inside is not None:
            where = f"inputs[{index}].path"
            why = f"is inside {inside}, another input's file"
            refusals.append(
                ValidationFailed(f"{where} {why}", code="invalid_path", fields={where: [why]})
            )
    return refusals


def _input_check(index: int, item: object) -> InputSpec:
    where = f"inputs[{index}]"
    if not isinstance(item, Mapping):
        raise _input_refusal(where, "must be an object with path and sha256")
    unknown = sorted(str(key) for key in item if key not in _INPUT_KEYS)
    if unknown:
        raise _input_refusal(where, f"has unknown keys {unknown}")
    problems: list[ValidationFailed] = []
    path, sha256, url, size = (item.get(key) for key in ("path", "sha256", "url", "size"))
    if not isinstance(path, str):
        problems.append(_input_refusal(f"{where}.path", "is required (a string)"))
    else:
        try:
            path = path_clean(path, field=f"{where}.path")
        except ValidationFailed as exc:
            problems.append(exc)
    if not isinstance(sha256, str) or not SHA256_PATTERN.match(sha256):
        problems.append(_input_refusal(f"{where}.sha256", "must be 64 lowercase hex characters"))
    if url is not None:
        why = url_problem(url) if isinstance(url, str) else "must be a string"
        if why is not None:
            problems.append(_input_refusal(f"{where}.url", why, code="invalid_url"))
    if size is not None and (url is None or type(size) is not int or size < 0):
        why = "is given only with a url" if url is None else "must be a whole number of bytes"
        problems.append(_input_refusal(f"{where}.size", why))
    if problems:
        raise refusals_merge(problems)
    assert isinstance(path, str)
    assert isinstance(sha256, str)
    return InputSpec(
        path=path,
        sha256=sha256,
        url=url if isinstance(url, str) else None,
        size=size if isinstance(size, int) else None,
    )


def _input_refusal(where: str, why: str, *, code: str = "invalid") -> ValidationFailed:
    return ValidationFailed(f"{where} {why}", code=code, fields={where: [why]})
