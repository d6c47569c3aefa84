"""The SDK is a package of its own (client/pyproject.toml): it imports nothing of the server
(also checked statically by .importlinter's client-alone contract), and what it declares it
needs is what client/requirements.txt pins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_sdk_and_its_cli_loads_no_django_and_nothing_of_the_server() -> None:
    # when: a fresh interpreter imports the package and its command line
    server = [
        "django",
        "rest_framework",
        "channels",
        "celery",
        "config",
        "accounts",
        "ledger",
        "hosts",
        "marketplace",
        "jobs",
        "blobs",
        "demo",
        "agent",
    ]
    code = (
        "import sys, communipute, communipute.cli\n"
        f"loaded = sorted({{name.split('.')[0] for name in sys.modules}} & set({server!r}))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT / "client")},
        cwd=ROOT / "client",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_declared_dependencies_are_the_pinned_ones() -> None:
    declared = re.findall(
        r'^\s+"([A-Za-z0-9_.-]+)[<>=]', (ROOT / "client" / "pyproject.toml").read_text(), re.M
    )
    pinned = [
        line.split("==")[0]
        for line in (ROOT / "client" / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert sorted(declared) == sorted(pinned) == ["httpx", "tqdm"]
    assert "-r client/requirements.txt" in (ROOT / "requirements-dev.txt").read_text()
    assert "pip install -q --no-deps -e ./client" in (ROOT / "Makefile").read_text()
