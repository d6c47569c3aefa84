"""A pool's settings as its admins send them (GET/PATCH /organisations/{id}/pool/): checked
here, without the database, every bad field named at once (docs/pools.md, "Settings").

The API names a setting without the model's ``pool_`` prefix (``fetch_networks`` is
``Organisation.pool_fetch_networks``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from accounts.models import Organisation, PoolLogs
from config.errors import ValidationFailed

# The wire's limits (agent/protocol.py PoolRef, PoolStore), repeated here because accounts
# sits below the protocol's users; tests/accounts/test_pool_settings.py pins them equal.
MAX_POOL_RULES = 64
MAX_RULE_CHARS = 255
MAX_URL_CHARS = 4096
# Wider than this is not one institution's network: 0.0.0.0/0 (or two /1s) is the internet.
MIN_PREFIX = {4: 8, 6: 16}

SETTINGS: tuple[str, ...] = (
    "required",
    "hidden",
    "fetch_networks",
    "fetch_hosts",
    "job_networks",
    "members_free",
    "output_store",
    "logs",
    "airlock",
)
_BOOLEANS = ("required", "hidden", "members_free", "airlock")
_STORE_KEYS = ("endpoint_url", "bucket", "prefix", "region")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9-]{0,64}$")


def pool_settings_of(organisation: Organisation) -> dict[str, Any]:
    """The organisation's pool settings under their API names."""
    return {name: getattr(organisation, f"pool_{name}") for name in SETTINGS}


def pool_settings_clean(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The settings after ``changes`` (API names), normalised; ValidationFailed naming every
    bad field (``output_store.bucket`` for a part of the store) and changing nothing."""
    problems: dict[str, list[str]] = {}
    unknown = sorted(set(changes) - set(SETTINGS))
    for name in unknown:
        problems[name] = [f"unknown setting; the settings are {', '.join(SETTINGS)}"]
    result = dict(current)
    for name, value in changes.items():
        if name in SETTINGS:
            cleaned = _setting_clean(name, value, problems)
            if cleaned is not None:
                result[name] = cleaned
    if not problems:
        _combination_check(result, problems)
    if problems:
        raise ValidationFailed(
            "invalid pool settings: " + ", ".join(problems),
            code="invalid_pool_settings",
            fields=problems,
        )
    return result


def _setting_clean(name: str, value: Any, problems: dict[str, list[str]]) -> Any:
    if name in _BOOLEANS:
        if not isinstance(value, bool):
            problems[name] = ["true or false"]
            return None
        return value
    if name == "logs":
        if value not in PoolLogs.values:
            problems[name] = [f"one of {', '.join(PoolLogs.values)}"]
            return None
        return value
    if name == "output_store":
        return _store_clean(value, problems)
    if not isinstance(value, list) or len(value) > MAX_POOL_RULES:
        problems[name] = [f"a list of at most {MAX_POOL_RULES} entries"]
        return None
    clean = _network_clean if name in ("fetch_networks", "job_networks") else _host_clean
    rules: list[str] = []
    for index, rule in enumerate(value):
        if not isinstance(rule, str) or not 1 <= len(rule) <= MAX_RULE_CHARS:
            problems.setdefault(name, []).append(f"[{index}]: 1 to {MAX_RULE_CHARS} characters")
            continue
        why, normal = clean(rule.strip())
        if why:
            problems.setdefault(name, []).append(f"[{index}] {rule!r}: {why}")
        elif normal not in rules:
            rules.append(normal)
    return None if name in problems else rules


def _network_clean(rule: str) -> tuple[str, str]:
    """A CIDR network, strict: ``10.1.0.0/16``, never ``10.1.2.3/16`` (host bits set)."""
    try:
        network = ipaddress.ip_network(rule, strict=True)
    except ValueError as exc:
        return f"not a CIDR network without host bits ({exc})", ""
    if network.prefixlen < MIN_PREFIX[network.version]:
        return (
            f"wider than /{MIN_PREFIX[network.version]}: that is the internet, not an "
            "institution's network",
            "",
        )
    return "", str(network)


def _host_clean(rule: str) -> tuple[str, str]:
    """A host name (``data.example.org``) or every name under a domain (``*.example.org``)."""
    name = rule.lower().rstrip(".")
    wildcard = name.startswith("*.")
    bare = name[2:] if wildcard else name
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        return "an address: list it in fetch_networks", ""
    labels = bare.split(".")
    if len(bare) > 253 or not all(_LABEL.match(label) for label in labels):
        return "a host name (letters, digits, hyphens, dots) or *.domain", ""
    if wildcard and len(labels) < 2:
        return "a wildcard needs a domain of at least two labels (*.example.org)", ""
    return "", name


def _store_clean(value: Any, problems: dict[str, list[str]]) -> dict[str, str] | None:
    if value == {}:
        return {}
    if not isinstance(value, dict):
        problems["output_store"] = [f"an object {{{', '.join(_STORE_KEYS)}}}, or {{}}"]
        return None
    bad: dict[str, list[str]] = {}
    for key in sorted(set(value) - set(_STORE_KEYS)):
        bad[f"output_store.{key}"] = [f"unknown; the keys are {', '.join(_STORE_KEYS)}"]
    store = {key: value.get(key, "") for key in _STORE_KEYS}
    for key, text in store.items():
        if not isinstance(text, str):
            bad[f"output_store.{key}"] = ["a string"]
    if not bad:
        bad.update(_store_values_check(store))
    if bad:
        problems.update(bad)
        return None
    return store


def _store_values_check(store: dict[str, str]) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    url = urlsplit(store["endpoint_url"])
    if (
        url.scheme not in ("http", "https")
        or not url.hostname
        or len(store["endpoint_url"]) > MAX_URL_CHARS
        or url.username
        or url.password
    ):
        bad["output_store.endpoint_url"] = [
            "an http or https URL without credentials (they stay on the hosts)"
        ]
    bucket = store["bucket"]
    if not _BUCKET.match(bucket) or ".." in bucket or _is_address(bucket):
        bad["output_store.bucket"] = [
            "an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, "
            "starting and ending with a letter or digit, not an IP address"
        ]
    prefix = store["prefix"]
    if len(prefix) > MAX_RULE_CHARS or prefix.startswith("/") or ".." in prefix.split("/"):
        bad["output_store.prefix"] = [f"at most {MAX_RULE_CHARS} characters, relative, no .."]
    if not _REGION.match(store["region"]):
        bad["output_store.region"] = ["lowercase letters, digits and hyphens (us-east-1)"]
    return bad


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _combination_check(result: dict[str, Any], problems: dict[str, list[str]]) -> None:
    if not result["output_store"]:
        if result["airlock"]:
            problems["airlock"] = ["needs output_store: outputs wait on the pool's store"]
        if result["logs"] == PoolLogs.STORE:
            problems["logs"] = ["'store' needs output_store"]
