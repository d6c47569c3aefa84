"""The limits the docs state are the ones the server applies (docs/api.md, docs/jobs.md).

Reads every "`SETTING` (value)" in docs/api.md and every row of docs/jobs.md's Settings table
that pairs setting names with their defaults, and compares each value with the setting.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

import config.settings as base

DOCS = Path(__file__).resolve().parents[2] / "docs"
_UNITS = {"": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "days": 86400, "day": 86400}
_VALUE = re.compile(r"^(\d+)\s*(KiB|MiB|GiB|days?|)$")


def _value(text: str) -> int | None:
    match = _VALUE.match(text.strip())
    return int(match[1]) * _UNITS[match[2]] if match else None


def _api_limits() -> list[tuple[str, int]]:
    text = (DOCS / "api.md").read_text()
    found = re.findall(r"`([A-Z][A-Z0-9_]+)` \(([^)]+)\)", text)
    return [(name, value) for name, raw in found if (value := _value(raw)) is not None]


def _jobs_settings() -> list[tuple[str, int]]:
    text = (DOCS / "jobs.md").read_text().split("## Settings", 1)[1]
    pairs = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        values = [_value(part) for part in cells[1].split(",")]
        if names and len(names) == len(values) and None not in values:
            pairs += [(name, value) for name, value in zip(names, values, strict=True) if value]
    return pairs


DOCUMENTED = [("api.md", *pair) for pair in _api_limits()] + [
    ("jobs.md", *pair) for pair in _jobs_settings()
]


def test_the_docs_state_the_limits():
    names = {name for _, name, _ in DOCUMENTED}
    assert {
        "JOB_SUBMIT_MAX_BODY_BYTES",
        "REQUEST_MAX_BODY_BYTES",
        "JOB_OUTPUT_MAX_BYTES",
        "JOB_FILE_MAX_BYTES",
        "JOB_CODE_MAX_BYTES",
        "JOB_ARCHIVE_MAX_BYTES",
        "JOB_MAX_TIMEOUT_SECONDS",
    } <= names


def _default(name: str) -> int:
    """The setting's default: config.settings' value (tests override some), else the default
    its ``env_int`` call reads the variable with (a beat period is no attribute)."""
    if hasattr(base, name):
        return int(getattr(base, name))
    source = (Path(base.__file__).read_text()).replace("\n", " ")
    match = re.search(rf'env_int\(\s*"{name}",\s*([0-9 *]+),', source)
    assert match, f"{name} is neither a setting nor read by env_int in config/settings.py"
    return math.prod(int(factor) for factor in match[1].split("*"))


@pytest.mark.parametrize(("doc", "name", "value"), DOCUMENTED)
def test_a_documented_limit_is_the_setting(doc, name, value):
    assert _default(name) == value, f"docs/{doc} says {name} is {value}"
