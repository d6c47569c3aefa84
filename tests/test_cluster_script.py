"""scripts/cluster.py without a cluster: what it refuses, and the HAProxy configuration it writes
(checked by HAProxy itself). tests/test_cluster.py runs the whole cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cluster import cluster_script

ROOT = Path(__file__).resolve().parents[1]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "scripts/cluster.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, "DATABASE_URL must name a PostgreSQL"),
        (
            {"DATABASE_URL": "sqlite:///x.sqlite3", "REDIS_URL": "redis://127.0.0.1:6379/0"},
            "SQLite runs one process only",
        ),
        ({"DATABASE_URL": "postgres://postgres@127.0.0.1/x"}, "REDIS_URL must name a Redis"),
    ],
)
def test_it_refuses_to_start_without_postgresql_and_redis(tmp_path, env, said):
    result = run(env, "--port", "0", "--var-dir", str(tmp_path))

    assert result.returncode == 1
    assert said in result.stderr
    assert not (tmp_path / "logs").exists()  # nothing started


def test_it_refuses_without_haproxy(tmp_path):
    env = {"DATABASE_URL": "postgres://postgres@127.0.0.1/x", "REDIS_URL": "redis://h/0"}

    result = run(env, "--var-dir", str(tmp_path), "--haproxy", "/nonexistent/haproxy")

    assert result.returncode == 1
    assert "apt-get install haproxy" in result.stderr


def test_actions_on_no_running_cluster_say_so(tmp_path):
    result = run({}, "--var-dir", str(tmp_path), "drain", "web1")

    assert result.returncode == 2
    assert "no running cluster" in result.stderr


@pytest.mark.cluster
def test_the_haproxy_configuration_it_writes_is_valid(tmp_path):
    cluster = cluster_script.Cluster(
        bind="127.0.0.1",
        port=8080,
        web=2,
        workers=1,
        worker_concurrency=1,
        var_dir=tmp_path,
        state_file=tmp_path / "cluster.json",
        haproxy="haproxy",
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(cluster_script.haproxy_config(cluster, {"web1": 9001, "web2": 9002}, "h"))

    checked = subprocess.run(
        [shutil.which("haproxy") or "haproxy", "-c", "-f", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert checked.returncode == 0, checked.stderr
    text = config.read_text()
    assert "server web1 127.0.0.1:9001" in text
    assert "server web2 127.0.0.1:9002" in text
    assert "timeout tunnel 1h" in text
    assert "hdr Host h" in text
