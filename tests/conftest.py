"""Shared fixtures and the service gates.

Tests that need a real service carry a marker (``postgres``, ``redis``, ``docker``,
``browser``, ``cluster``). Where the service is missing they skip with the reason, except under
``CI=true``, where a missing service is a failure: CI must never pass by skipping.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connections
from rest_framework.test import APIClient

from accounts.models import User
from ledger.providers import providers

IN_CI = os.environ.get("CI", "").lower() == "true"


@cache
def _redis_problem() -> str | None:
    url = os.environ.get("REDIS_URL")
    if not url:
        return "REDIS_URL is not set"
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {url} does not answer: {exc}"
    return None


@cache
def _docker_problem() -> str | None:
    try:
        import docker
    except ImportError:
        return "the docker package is not installed"
    try:
        client = docker.from_env(timeout=5)
        client.ping()
    except Exception as exc:
        return f"no Docker engine: {exc}"
    image = os.environ.get("COMMUNIPUTE_RUNNER_IMAGE", "communipute/runner:latest")
    try:
        client.images.get(image)
    except Exception:
        return f"runner image {image} is missing (make runner-image)"
    return None


@cache
def _browser_problem() -> str | None:
    chromium = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    if not shutil.which(chromium):
        return f"Chromium is not installed at {chromium}"
    return None


@cache
def _haproxy_problem() -> str | None:
    if not shutil.which("haproxy"):
        return "HAProxy is not installed (apt-get install haproxy)"
    return None


def _postgres_problem() -> str | None:
    if not settings.IS_POSTGRES:
        return "DATABASE_URL is not PostgreSQL"
    return None


def _s3_problem() -> str | None:
    # .ci/run starts moto's server and exports this (tests/blobs/conftest.py).
    if not os.environ.get("BLOB_TEST_S3_ENDPOINT"):
        return "BLOB_TEST_S3_ENDPOINT is not set (an S3-compatible endpoint, e.g. moto_server)"
    return None


GATES: dict[str, Callable[[], str | None]] = {
    "s3": _s3_problem,
    "postgres": _postgres_problem,
    "redis": _redis_problem,
    "docker": _docker_problem,
    "browser": _browser_problem,
    "cluster": _haproxy_problem,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """CI has no GPU and must skip nothing: it deselects GPU tests instead (and says so)."""
    if not IN_CI:
        return
    gpu_tests = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu_tests:
        config.hook.pytest_deselected(items=gpu_tests)
        items[:] = [item for item in items if item.get_closest_marker("gpu") is None]
        print(f"\nCI: deselected {len(gpu_tests)} GPU test(s); CI machines have no GPU.")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, problem_of in GATES.items():
        if item.get_closest_marker(marker) is None:
            continue
        problem = problem_of()
        if problem is None:
            continue
        if IN_CI:
            pytest.fail(f"CI=true and this test needs {marker}: {problem}", pytrace=False)
        pytest.skip(f"needs {marker}: {problem}")


def sync_thread_connections_close() -> None:
    """Close the database connections of asgiref's shared sync thread.

    ``sync_to_async`` and ``database_sync_to_async`` run in that one thread for the whole
    session, and channels' test communicators switch off the ``close_old_connections`` that
    would close its connection in production. Left open, it outlives the test database, whose
    teardown then fails with "database ... is being accessed by other users".
    """
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture(autouse=True)
def _no_job_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests pick reconciliation's job facts themselves (``ledger_reconcile(job_facts=…)``):
    their jobs are often plain numbers. The jobs app's registration is tested in tests/jobs."""
    monkeypatch.setattr(providers, "job_facts", None)


@pytest.fixture(autouse=True)
def _sync_thread_connections_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        sync_thread_connections_close()


def blob_dir_use(settings: Any, folder: Any) -> None:
    """This process's blob store: the local disk at ``folder`` (a daphne the test starts gets
    the same folder as BLOB_DIR, so both see the same blobs)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder), "allow_overwrite": True},
        },
    }


@pytest.fixture(autouse=True)
def _sandbox_mounts_released(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that left an attempt's loop-mounted /work and /outputs behind (an agent it
    killed, a runtime test that prepared without a clean-up) gets them released here, as a
    restarted agent would (agent.runtime.quota), so a whole run leaks no mount or loop device."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    folder: Path = request.getfixturevalue("tmp_path")
    yield
    from agent.runtime import quota

    for mount_point in quota.mounts_under(folder):
        quota.mounts_release(Path(mount_point).parent)


@pytest.fixture(autouse=True)
def _blob_store_in_tmp(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Blobs land in a folder of this test, never in the checkout's var/blobs."""
    blob_dir_use(settings, tmp_path_factory.mktemp("blobs"))


def _user(username: str, **extra: object) -> User:
    return User.objects.create_user(
        username=username, email=f"{username}@example.com", password="correct horse 1", **extra
    )


@pytest.fixture
def alice(db: None) -> User:
    """A renter."""
    return _user("alice")


@pytest.fixture
def hana(db: None) -> User:
    """A host owner."""
    return _user("hana")


@pytest.fixture
def mallory(db: None) -> User:
    """An attacker with an ordinary account."""
    return _user("mallory")


@pytest.fixture
def staff(db: None) -> User:
    return _user("sam", is_staff=True)


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    def make(user: User) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def daphne_live(tmp_path: Any, settings: Any) -> Iterator[Any]:
    """A real daphne on a free loopback port with tests.live.LIVE_SETTINGS, which this process
    gets too (it runs the API, the poster, the reaper). Needs ``postgres`` and ``redis`` and
    ``django_db(transaction=True)``: daphne shares the test database. Killed before the
    database is flushed; its log is printed on the way out."""
    from tests.live import live_server_start

    server = live_server_start(tmp_path, settings)
    yield server
    server.kill()
    print(f"--- daphne ---\n{server.log_tail()}")


@pytest.fixture(scope="module")
def daphne_live_shared(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[Any]:
    """One daphne for a whole module (starting one costs a second or two a test), with
    tests.live.LIVE_SETTINGS; each test applies them to this process with
    ``tests.live.live_settings_apply``. Started once the test database exists (it shares it);
    its sockets close their database connections after every message, so the flush between
    tests is not blocked."""
    from tests.live import LiveServer

    media = tmp_path_factory.mktemp("media")
    with django_db_blocker.unblock():
        server = LiveServer(tmp_path_factory.mktemp("daphne") / "daphne.log")
    server.env["MEDIA_ROOT"] = str(media)
    server.env["BLOB_DIR"] = str(media / "blobs")
    server.media_root = media
    server.start()
    yield server
    server.kill()
    print(f"--- daphne ---\n{server.log_tail()}")
