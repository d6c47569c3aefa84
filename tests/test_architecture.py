"""The dependency picture of docs/architecture.md holds: the contracts in .importlinter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_imports_point_one_way() -> None:
    # lint-imports builds the import graph of every package statically (nothing is imported)
    lint = Path(sys.executable).with_name("lint-imports")
    # The SDK's package lives in client/ (installed editable by `make venv`): found either way.
    path = os.pathsep.join(filter(None, [str(ROOT / "client"), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [str(lint), "--config", str(ROOT / ".importlinter"), "--no-cache"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
