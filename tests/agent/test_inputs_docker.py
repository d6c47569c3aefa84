"""A real container reads its input at /inputs and cannot change it (Docker and the runner
image needed, as the other docker tests)."""

from __future__ import annotations

import hashlib
import os

import pytest

from agent.jobrunner.runtime_manager import RuntimeJobManager
from agent.runtime import DockerRuntime
from agent.runtime.blobcache import BlobCache, FetchPolicy
from tests.agent.blob_servers import BlobState, blob_server_start, sha256_of, tls_make
from tests.agent.jobrunner_fakes import FAST, FakeLink, log_as_stored
from tests.agent.test_jobrunner_docker import (
    RecordingUploader,
    acknowledge_until_done,
    script_offer,
)
from tests.agent.test_runtime_docker import settings_for

pytestmark = pytest.mark.docker

SOURCE = """
import hashlib, os
path = '/inputs/data/x.bin'
print('env', os.environ['COMMUNIPUTE_INPUTS'])
print('sha', hashlib.sha256(open(path, 'rb').read()).hexdigest())
for what, attempt in [
    ('write', lambda: open(path, 'r+b').write(b'evil')),
    ('chmod', lambda: os.chmod(path, 0o666)),
    ('create', lambda: open('/inputs/new.txt', 'wb').write(b'x')),
    ('remove', lambda: os.remove(path)),
]:
    try:
        attempt()
        print(what, 'ALLOWED')
    except OSError as exc:
        print(what, 'refused', exc.errno)
"""


async def test_a_container_reads_its_input_read_only(tmp_path):
    # given: a blob in the store, the cache beside the attempt dirs (hard links)
    data = os.urandom(200_000)
    tls = tls_make(tmp_path)
    state = BlobState(blobs={"/f/x": data})
    served = blob_server_start(tls, state)
    work_root = tmp_path / "jobs"
    runtime = DockerRuntime(settings_for(work_root))
    cache = BlobCache.for_work_root(
        work_root,
        max_bytes=10 * 1024 * 1024,
        server=f"https://localhost:{served.port}",
        policy=FetchPolicy(),
        store_context=tls.client_context(),
    )
    link, uploader = FakeLink(), RecordingUploader()
    manager = RuntimeJobManager(runtime, uploader=uploader, options=FAST, blob_cache=cache)
    await manager.start(link)
    given = script_offer(SOURCE, job_id=31)
    given["inputs"] = [
        {"path": "data/x.bin", "sha256": sha256_of(data), "source": "store", "url": "/f/x"}
    ]

    try:
        # when
        await manager.on_offer(given)
        finished = await acknowledge_until_done(manager, link, (31, 1))

        # then
        log = log_as_stored(link.of("job.log")).splitlines()
        assert finished["status"] == "succeeded", (finished, log)
        assert log[:2] == ["env /inputs", f"sha {hashlib.sha256(data).hexdigest()}"]
        assert [line.split()[:2] for line in log[2:]] == [
            ["write", "refused"],
            ["chmod", "refused"],
            ["create", "refused"],
            ["remove", "refused"],
        ]
        cached = cache.path_of(sha256_of(data))
        assert cached.read_bytes() == data
        assert os.stat(cached).st_nlink == 1  # the attempt's link went with its directory
    finally:
        await manager.stop()
        for owned in runtime.list_own():
            runtime.kill(owned.job_id, owned.attempt)
        served.stop()
