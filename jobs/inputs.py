"""Checks on a job's inputs before anything is written (pure but ``pool_fetch_rules``, which
reads the pool). Disk: marketplace.disk.

Inputs (docs/jobs.md, "Inputs") are references, not bytes: a digest the owner holds, or an
https URL the agent fetches and checks against the digest. Their shape, paths and URLs are
checked here; whether the owner holds a digest is the submit's (it needs the database). A URL
naming a loopback, private, link-local, multicast or reserved address (or ``localhost``) is
refused here as text; the agent checks the address it resolves to as well.

A pool job (docs/pools.md, "Inputs stay inside") may also name what its pool's rules allow:
an IP literal inside ``pool_fetch_networks`` or a name matching ``pool_fetch_hosts``, over
http too (inside the institution). Loopback, link-local, multicast and unspecified addresses
stay refused whatever the pool lists: those are the host itself, never the institution's
data. The server never fetches any of these URLs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from django.conf import settings

from accounts.models import Organisation
from agent.protocol import MAX_URL_CHARS
from config.errors import ValidationFailed
from jobs.validation import path_clean, refusals_merge

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_INPUT_KEYS = {"path", "sha256", "url", "size"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A last label that is all digits or hex ("127.1", "2130706433", "0x7f000001") makes a
# resolver read the name as an IPv4 address; no real domain ends like that.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_HOST_RULE = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
POOL_REFUSAL = "the pool doesn't allow this address"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class PoolFetchRules:
    """Where a pool job's URL inputs may point besides public https (the organisation's
    ``pool_fetch_networks`` and ``pool_fetch_hosts``; the same lists the offer's ``pool``
    carries to the agent). A malformed entry allows nothing (the settings API refuses them)."""

    networks: tuple[Network, ...] = ()
    hosts: tuple[str, ...] = ()

    @classmethod
    def of(cls, pool: Organisation) -> PoolFetchRules:
        networks = []
        for value in pool.pool_fetch_networks or ():
            try:
                networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
            except ValueError:
                continue
        hosts = tuple(
            str(value).strip().lower().rstrip(".")
            for value in pool.pool_fetch_hosts or ()
            if _HOST_RULE.fullmatch(str(value).strip().lower().rstrip("."))
        )
        return cls(networks=tuple(networks), hosts=hosts)

    def allows_address(self, address: Address) -> bool:
        return any(
            address in network for network in self.networks if network.version == address.version
        )

    def allows_name(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for rule in self.hosts:
            if rule.startswith("*.") and host.endswith(rule[1:]):
                return True
            if host == rule:
                return True
        return False


def pool_fetch_rules(owner_id: int, pool_id: int | None) -> PoolFetchRules | None:
    """The fetch rules of a pool the owner belongs to; None for no pool or one the owner
    isn't in (the submit refuses that as ``unknown_pool``: its URLs are judged as public)."""
    if pool_id is None:
        return None
    pool = Organisation.objects.filter(pk=pool_id, memberships__user_id=owner_id).first()
    return PoolFetchRules.of(pool) if pool is not None else None


@dataclass(frozen=True)
class InputSpec:
    """One checked input: a held blob (``url`` None; its size is the store's) or a URL."""

    path: str
    sha256: str
    url: str | None = None
    size: int | None = None


def url_problem(url: str, pool: PoolFetchRules | None = None) -> str | None:
    """Why ``url`` may not be a job input's URL, or None when it may (see the module doc);
    ``pool``: the job's pool's rules, which allow more."""
    if len(url) > MAX_URL_CHARS:
        return f"is longer than {MAX_URL_CHARS} characters"
    if _CONTROL.search(url) or " " in url:
        return "contains spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  a bad port raises ValueError here
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and pool is None):
        return "must be an https:// URL"
    if "@" in parts.netloc:
        return "must not carry a user name or password"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "names no host"
    if host == "localhost" or host.endswith(".localhost"):
        return "must not name localhost"
    if pool is None:
        return _address_problem(host)
    return _pool_address_problem(host, parts.scheme, pool)


def _pool_address_problem(host: str, scheme: str, pool: PoolFetchRules) -> str | None:
    """A pool job's URL host: inside the pool's rules (http or https), else public https."""
    try:
        address: Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if pool.allows_address(address):
            if _is_the_host_itself(address):
                return f"{POOL_REFUSAL}: {address} is a loopback, link-local or multicast address"
            return None
    elif not _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]) and pool.allows_name(host):
        return None
    if scheme == "http":
        return f"{POOL_REFUSAL}: http:// only to the pool's own networks and names"
    problem = _address_problem(host)
    if problem is not None and address is not None:
        return f"{POOL_REFUSAL}: {address} is not in its fetch networks ({problem})"
    return problem


def _is_the_host_itself(address: Address) -> bool:
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
    )


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


def inputs_check(raw: Sequence[object], pool: PoolFetchRules | None = None) -> list[InputSpec]:
    """The inputs in typed form, every bad one named at once (``inputs[i].path`` ...; i from 0).

    Shape, paths (``path_clean``'s rules, no duplicates), digests and URLs (``pool``: the
    job's pool's rules, ``url_problem``); the count cap. A ``size`` is the renter's word for a
    URL input (a store input's size is the store's).
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
            spec = _input_check(index, item, pool)
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


def _input_check(index: int, item: object, pool: PoolFetchRules | None) -> InputSpec:
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
        why = url_problem(url, pool) if isinstance(url, str) else "must be a string"
        if why is not None:
            code = "address_not_allowed" if why.startswith(POOL_REFUSAL) else "invalid_url"
            problems.append(_input_refusal(f"{where}.url", why, code=code))
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
