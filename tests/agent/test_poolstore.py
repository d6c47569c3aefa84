"""The agent's side of a pool's own output store (agent/poolstore.py), against moto's S3
(BLOB_TEST_S3_ENDPOINT): outputs and logs go there, not to the server; a host that can't write
there fails the job as a host fault before it runs; a release reads the object back, checks it
and hands it to the uploader."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from agent import poolstore
from agent.config import ConfigError, config_load
from agent.jobrunner.runtime_manager import Capacity, RuntimeJobManager
from agent.poolstore import (
    NO_BOTO3_REASON,
    PoolStoreError,
    PoolStores,
    StoreCredentials,
    credentials_file_read,
    pool_stores_from_config,
    release_carry,
)
from agent.protocol import AGENT_MESSAGES, SERVER_MESSAGES, decode, encode
from agent.runtime.types import Outcome, OutputFile
from tests.agent.jobrunner_fakes import (
    FAST,
    FakeLink,
    FakeRuntime,
    FakeUploader,
    offer,
    output_file,
)

pytestmark = pytest.mark.s3

SUCCESS = Outcome("succeeded", "exit code 0", 0)
KEYS = StoreCredentials("pool-key", "pool-secret")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store() -> dict[str, str]:
    bucket = f"pool-{uuid.uuid4().hex[:12]}"
    endpoint = os.environ["BLOB_TEST_S3_ENDPOINT"]
    s3(endpoint).create_bucket(Bucket=bucket)
    return {"endpoint_url": endpoint, "bucket": bucket, "prefix": "lab/", "region": ""}


def s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEYS.access_key_id,
        aws_secret_access_key=KEYS.secret_access_key,
    )


def objects(store: dict[str, str]) -> dict[str, bytes]:
    client = s3(store["endpoint_url"])
    listed = client.list_objects_v2(Bucket=store["bucket"]).get("Contents", [])
    return {
        item["Key"]: client.get_object(Bucket=store["bucket"], Key=item["Key"])["Body"].read()
        for item in listed
    }


def pool(store: dict[str, str] | None, logs: str = "central", pool_id: int = 3) -> Any:
    ref: dict[str, Any] = {
        "id": pool_id,
        "fetch_networks": [],
        "fetch_hosts": [],
        "job_networks": [],
        "logs": logs,
        "airlock": True,
    }
    if store is not None:
        ref["output_store"] = store
    return ref


@pytest.fixture
def runtime(tmp_path: Path) -> FakeRuntime:
    return FakeRuntime(tmp_path / "work")


async def run_one(
    runtime: Any,
    stores: PoolStores,
    pool_ref: dict[str, Any],
    *,
    log: bytes = b"",
) -> tuple[FakeLink, FakeUploader, dict[str, Any]]:
    link, uploader = FakeLink(), FakeUploader()
    manager = RuntimeJobManager(
        runtime, uploader=uploader, capacity=Capacity(slots=1), options=FAST, pool_stores=stores
    )
    await manager.start(link)
    try:
        await manager.on_offer(offer(pool=pool_ref))
        await link.until(
            lambda: ("start", 7, 1) in runtime.calls or link.of("job.finished"), "a start"
        )
        if log:
            runtime.output(7, 1, log)
        runtime.exit(7, 1, SUCCESS)
        [finished] = await link.next_of("job.finished")
        for kind, data, message_id in link.sent:  # all of it valid on the wire
            decode(encode(kind, data, message_id), AGENT_MESSAGES)
        return link, uploader, finished
    finally:
        await manager.stop()


async def test_a_pool_jobs_outputs_go_to_the_pool_store_and_the_server_gets_digests(
    runtime, store, tmp_path
):
    # given
    runtime.outputs = [output_file(tmp_path, "result.csv", b"patients,42\n")]

    # when
    _, uploader, finished = await run_one(runtime, PoolStores({"3": KEYS}), pool(store))

    # then
    assert uploader.uploaded == []  # nothing went to the server's store
    assert finished["outputs"] == [
        {"name": "result.csv", "size": 12, "sha256": sha(b"patients,42\n"), "location": "pool"}
    ]
    assert objects(store) == {"lab/jobs/7/1/outputs/result.csv": b"patients,42\n"}


@pytest.mark.parametrize("logs", ["store", "redacted"])
async def test_a_pool_that_keeps_its_log_gets_no_job_log_only_its_size(runtime, store, logs):
    text = "name: Jane Doe\nmrn: 0042 — ok\n".encode()

    link, _, finished = await run_one(
        runtime, PoolStores({"*": KEYS}), pool(store, logs=logs), log=text
    )

    assert link.of("job.log") == []
    assert finished["log_bytes"] == len(text)
    expected = {"lab/jobs/7/1/log": text} if logs == "store" else {}
    assert objects(store) == expected


async def test_a_pool_that_keeps_only_its_log_still_uploads_outputs_centrally(
    runtime, store, tmp_path
):
    # given a pool with a store for its logs but outputs as any job's
    ref = pool(None, logs="store")
    runtime.outputs = [output_file(tmp_path, "a.txt", b"a")]

    link, uploader, finished = await run_one(runtime, PoolStores({"*": KEYS}), ref, log=b"hi\n")

    # then: the log has nowhere to go but is still not sent; the output is uploaded
    assert link.of("job.log") == []
    assert (finished["log_bytes"], uploader.uploaded) == (3, [(7, 1, "a.txt")])


@pytest.mark.parametrize("missing", ["credentials", "boto3"])
async def test_a_host_that_cannot_write_the_pool_store_fails_the_job_before_it_runs(
    runtime, store, monkeypatch, missing
):
    # given
    stores = PoolStores({"99": KEYS})  # keys for another pool only
    if missing == "boto3":
        stores = PoolStores({"3": KEYS})
        monkeypatch.setattr(poolstore, "_boto3_missing", lambda: True)

    # when
    link, _, finished = await run_one(runtime, stores, pool(store))

    # then
    assert (finished["status"], finished["fault"]) == ("failed", "host")
    reason = NO_BOTO3_REASON if missing == "boto3" else poolstore.no_credentials_reason(3)
    assert finished["reason"] == reason
    assert not any(call[0] in ("prepare", "start") for call in runtime.calls)
    assert link.types(without=("job.usage",)) == ["job.accept", "job.finished"]
    assert objects(store) == {}


def test_a_store_that_holds_other_bytes_fails_the_fetch_and_leaves_no_file(store, tmp_path):
    stores = PoolStores({"3": KEYS})
    s3(store["endpoint_url"]).put_object(Bucket=store["bucket"], Key="k", Body=b"forged")
    into = tmp_path / "got"

    with pytest.raises(PoolStoreError, match="not the output the job reported"):
        stores.fetch(3, store, "k", 6, sha(b"honest"), into)
    with pytest.raises(PoolStoreError, match="not the output the job reported"):
        stores.fetch(3, store, "k", 3, sha(b"for"), into)  # longer than said

    assert not into.exists()


def release(store: dict[str, str], data: bytes, **overrides: Any) -> Any:
    message = {
        "release_id": 41,
        "job_id": 7,
        "attempt": 1,
        "name": "out/result.csv",
        "size": len(data),
        "sha256": sha(data),
        "pool_id": 3,
        "store": store,
        "key": "lab/jobs/7/1/outputs/out/result.csv",
        **overrides,
    }
    return decode(encode("output.release", message), SERVER_MESSAGES)["data"]


def test_a_release_reads_the_object_checks_it_and_hands_it_to_the_uploader(store, tmp_path):
    data = b"mean,3.5\n"
    s3(store["endpoint_url"]).put_object(
        Bucket=store["bucket"], Key="lab/jobs/7/1/outputs/out/result.csv", Body=data
    )
    uploaded: list[tuple[int, str, bytes]] = []

    def upload(release_id: int, output: OutputFile) -> None:
        uploaded.append((release_id, output.name, output.path.read_bytes()))

    assert release_carry(PoolStores({"3": KEYS}), release(store, data), upload, tmp_path)
    assert uploaded == [(41, "out/result.csv", data)]
    assert list((tmp_path / "releases").iterdir()) == []  # the copy is gone


def test_a_release_whose_object_differs_or_whose_host_has_no_keys_uploads_nothing(store, tmp_path):
    s3(store["endpoint_url"]).put_object(
        Bucket=store["bucket"], Key="lab/jobs/7/1/outputs/out/result.csv", Body=b"tampered"
    )
    uploaded: list[int] = []

    def upload(release_id: int, output: OutputFile) -> None:
        uploaded.append(release_id)

    assert not release_carry(PoolStores({"3": KEYS}), release(store, b"original"), upload, tmp_path)
    assert not release_carry(PoolStores({}), release(store, b"tampered"), upload, tmp_path)
    assert uploaded == []


# --- settings -------------------------------------------------------------------------------


def test_credentials_come_from_the_environment_and_a_per_pool_file(tmp_path):
    path = tmp_path / "pools.json"
    path.write_text(json.dumps({"3": {"access_key_id": "k3", "secret_access_key": "s3"}}))
    env = {
        "COMMUNIPUTE_POOL_STORE_ACCESS_KEY_ID": "any",
        "COMMUNIPUTE_POOL_STORE_SECRET_ACCESS_KEY": "secret",
        "COMMUNIPUTE_POOL_STORE_CREDENTIALS_FILE": str(path),
    }

    stores = pool_stores_from_config(config_load(tmp_path / "agent.json", env=env))

    assert stores.credentials_for(3) == StoreCredentials("k3", "s3")
    assert stores.credentials_for(5) == StoreCredentials("any", "secret")


@pytest.mark.parametrize(
    ("env", "content", "message"),
    [
        ({"COMMUNIPUTE_POOL_STORE_ACCESS_KEY_ID": "k"}, None, "go together"),
        ({}, '{"lab": {"access_key_id": "k", "secret_access_key": "s"}}', "not a pool id"),
        ({}, '{"3": {"access_key_id": "k"}}', "needs access_key_id and secret_access_key"),
        ({}, "[1]", "JSON object"),
    ],
)
def test_bad_credential_settings_are_refused_naming_the_setting(tmp_path, env, content, message):
    if content is not None:
        path = tmp_path / "pools.json"
        path.write_text(content)
        env = {**env, "COMMUNIPUTE_POOL_STORE_CREDENTIALS_FILE": str(path)}

    with pytest.raises(ConfigError, match=message):
        config_load(tmp_path / "agent.json", env=env)


def test_the_credentials_file_reader_keeps_session_tokens(tmp_path):
    path = tmp_path / "pools.json"
    path.write_text(
        json.dumps({"*": {"access_key_id": "a", "secret_access_key": "b", "session_token": "t"}})
    )
    assert credentials_file_read(path) == {"*": StoreCredentials("a", "b", "t")}


async def test_a_restarted_agent_keeps_a_pool_jobs_outputs_and_log_on_the_pool_store(
    runtime, store, tmp_path
):
    # given a container of an earlier run, whose state file names the pool
    from agent.jobrunner.offer import cap_from_offer
    from agent.jobrunner.state import AttemptState, state_read, state_write
    from agent.runtime.types import OwnedContainer

    directory = runtime.work_root / "job-7-1"
    directory.mkdir(parents=True)
    ref = pool(store, logs="store")
    state_write(directory, AttemptState(1, 10, 0, cap_from_offer(offer()), pool=ref))
    stored_state = state_read(directory)
    assert stored_state is not None
    assert stored_state.pool == ref
    runtime.owned = [OwnedContainer(7, 1, "c-7-1", "running", "run")]
    runtime.attachable[(7, 1)] = 5.0
    runtime.outputs = [output_file(tmp_path, "result.csv", b"42\n")]
    link, uploader = FakeLink(), FakeUploader()
    manager = RuntimeJobManager(
        runtime, uploader=uploader, options=FAST, pool_stores=PoolStores({"*": KEYS})
    )
    await manager.start(link)

    # when the server keeps it and it ends
    await manager.on_resume([{"job_id": 7, "attempt": 1}], [])
    await link.until(lambda: ("attach", 7, 1) in runtime.calls, "the attach")
    runtime.output(7, 1, b"the whole log again\n")
    runtime.exit(7, 1, SUCCESS)
    [finished] = await link.next_of("job.finished")
    await manager.stop()

    # then
    assert (link.of("job.log"), uploader.uploaded) == ([], [])
    assert [o["location"] for o in finished["outputs"]] == ["pool"]
    assert objects(store) == {
        "lab/jobs/7/1/outputs/result.csv": b"42\n",
        "lab/jobs/7/1/log": b"the whole log again\n",
    }


def test_a_state_file_whose_pool_was_tampered_with_is_not_trusted(tmp_path):
    from agent.jobrunner.state import AttemptState, state_path, state_read, state_write

    state_write(tmp_path, AttemptState(3, 10, 0, None, pool=pool(None)))
    data = json.loads(state_path(tmp_path).read_text())
    data["pool"]["logs"] = "everywhere"
    state_path(tmp_path).write_text(json.dumps(data))

    assert state_read(tmp_path) is None


async def test_the_agent_carries_one_release_at_a_time_with_its_own_credentials(
    tmp_path, monkeypatch, store
):
    # given an agent whose credentials are its own settings, and a slow release under way
    import asyncio
    import threading

    from agent.client import AgentClient

    config = config_load(
        tmp_path / "agent.json",
        env={
            "COMMUNIPUTE_POOL_STORE_ACCESS_KEY_ID": "k",
            "COMMUNIPUTE_POOL_STORE_SECRET_ACCESS_KEY": "s",
        },
        overrides={"server": "http://127.0.0.1:9", "host_id": 1, "credential": "cph_x"},
    )
    client = AgentClient(config, handle_signals=False)
    gate, calls = threading.Event(), []

    def carry(stores: PoolStores, message: Any, upload: Any, work_dir: Path) -> bool:
        calls.append((stores.credentials_for(message["pool_id"]), message["release_id"], work_dir))
        gate.wait(5)
        return True

    monkeypatch.setattr(poolstore, "release_carry", carry)
    raw = encode("output.release", release(store, b"x"))

    # when the same release arrives twice while the first is carried, and again after it
    await client._receive(raw)
    await client._receive(raw)
    await asyncio.sleep(0.1)
    gate.set()
    await asyncio.gather(*client._releases.values())
    await client._receive(raw)
    await asyncio.gather(*client._releases.values())

    # then
    assert calls == [(StoreCredentials("k", "s"), 41, config.work_dir)] * 2
