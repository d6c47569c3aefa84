"""An attempt's data: the offer's inputs parsed and checked again, the inputs hard-linked into
``<attempt_dir>/inputs``, the code archive unpacked under its checks, the faults named, and a
job of the process runtime reading its input (HTTPS blob server on loopback)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile

import pytest

from agent.config import config_load
from agent.jobrunner import blob_cache_from_config
from agent.jobrunner.offer import spec_from_offer
from agent.jobrunner.runtime_manager import RuntimeJobManager
from agent.runtime import ProcessRuntime, RuntimeSettings
from agent.runtime.blobcache import BlobCache, FetchPolicy
from agent.runtime.inputs import HOST_FETCH_REASON, ArchiveError, archive_unpack, inputs_place
from agent.runtime.types import InputSpec, JobSpec, JobSpecError
from tests.agent.blob_servers import BlobState, blob_server_start, sha256_of, tls_make
from tests.agent.jobrunner_fakes import FAST, FakeLink, log_as_stored, offer
from tests.agent.test_blobcache import LOOPBACK

SHA = "a" * 64


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return tls_make(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def state():
    return BlobState()


@pytest.fixture
def served(tls, state):
    server = blob_server_start(tls, state)
    yield server
    server.stop()


@pytest.fixture
def cache(tmp_path, tls, served):
    return BlobCache(
        tmp_path / "work" / "cache" / "blobs",
        max_bytes=10 * 1024 * 1024,
        server=f"https://localhost:{served.port}",
        policy=FetchPolicy(allow_networks=LOOPBACK),
        store_context=tls.client_context(),
        renter_context=tls.client_context(),
        tries=2,
        retry_seconds=0.01,
    )


def attempt_dir(tmp_path):
    directory = tmp_path / "work" / "job-7-1"
    (directory / "work").mkdir(parents=True)
    return directory


def ref(path: str, data: bytes, url: str, source: str = "store") -> InputSpec:
    return InputSpec(path=path, sha256=sha256_of(data), source=source, url=url, size=len(data))  # type: ignore[arg-type]


def spec_with(**kwargs) -> JobSpec:
    files = kwargs.pop("files", {"main.py": b"print(1)"})
    return JobSpec(job_id=7, attempt=1, files=files, entrypoint="main.py", **kwargs)


def zip_of(members: dict[str, bytes], **infos: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name in infos:
                info.external_attr = infos[name] << 16
            archive.writestr(info, data)
    return buffer.getvalue()


# --- the offer ---------------------------------------------------------------------------------


def test_the_offer_inputs_and_code_archive_become_the_spec():
    given = offer(
        inputs=[
            {"path": "data/x.csv", "sha256": SHA, "source": "store", "url": "/f/t", "size": 3},
            {"path": "y", "sha256": "b" * 64, "source": "url", "url": "https://e.org/y"},
        ],
        code_archive={"path": "code.zip", "sha256": "c" * 64, "source": "store", "url": "/f/c"},
        files=[],
    )

    spec = spec_from_offer(given)

    assert spec.inputs == (
        InputSpec("data/x.csv", SHA, "store", "/f/t", 3),
        InputSpec("y", "b" * 64, "url", "https://e.org/y", None),
    )
    assert spec.code_archive == InputSpec("code.zip", "c" * 64, "store", "/f/c", None)
    assert spec.files == {}  # the entrypoint is the archive's, checked once unpacked


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ([{"path": "../x", "sha256": SHA, "url": "/f"}], "'..'"),
        ([{"path": "/etc/passwd", "sha256": SHA, "url": "/f"}], "absolute"),
        ([{"path": "a\\b", "sha256": SHA, "url": "/f"}], "backslash"),
        ([{"path": "x", "sha256": SHA.upper(), "url": "/f"}], "64 hex digits"),
        ([{"path": "x", "sha256": "a" * 63, "url": "/f"}], "64 hex digits"),
        ([{"path": "x", "sha256": SHA, "url": "/f", "source": "ftp"}], "unknown source"),
        ([{"path": "x", "sha256": SHA, "url": "/f", "size": "3"}], "whole number"),
        ([{"path": "x", "sha256": SHA, "url": "/f", "size": -1}], "negative"),
        ([{"path": "x", "sha256": SHA, "url": ""}], "URL of 1 to"),
        ([{"path": "x", "sha256": SHA}], "needs a path, a sha256 and a url"),
        ([{"path": "x", "sha256": SHA, "url": "/f"}] * 2, "appears twice"),
        (
            [
                {"path": "a", "sha256": SHA, "url": "/f"},
                {"path": "a/b", "sha256": SHA, "url": "/f"},
            ],
            "both a file and a directory",
        ),
    ],
)
def test_the_agent_refuses_bad_inputs_itself(inputs, words):
    with pytest.raises(JobSpecError, match=words):
        spec_from_offer(offer(inputs=inputs))


def test_the_offer_of_a_group_task_names_its_index_and_count():
    # when
    task = spec_from_offer(offer(task={"index": 3, "count": 8}))
    alone = spec_from_offer(offer())

    # then
    assert (task.task_index, task.task_count) == (3, 8)
    assert task.task_environment() == {
        "COMMUNIPUTE_TASK_INDEX": "3",
        "COMMUNIPUTE_TASK_COUNT": "8",
    }
    assert (alone.task_index, alone.task_count, alone.task_environment()) == (None, None, {})


@pytest.mark.parametrize("task", [{"index": 8, "count": 8}, {"index": -1, "count": 8}])
def test_a_task_index_outside_its_group_is_refused(task):
    with pytest.raises(JobSpecError, match="is not a task"):
        spec_from_offer(offer(task=task))


def test_without_an_archive_the_entrypoint_must_be_a_file():
    with pytest.raises(JobSpecError, match="at least one file"):
        spec_from_offer(offer(files=[]))


# --- placing inputs ----------------------------------------------------------------------------


def test_inputs_are_hard_links_to_the_cache_read_only(tmp_path, cache, served, state):
    state.blobs.update({"/f/1": b"one", "/f/2": b"two"})
    directory = attempt_dir(tmp_path)
    spec = spec_with(inputs=(ref("data/a.txt", b"one", "/f/1"), ref("b.bin", b"two", "/f/2")))

    assert inputs_place(directory, spec, cache) is None

    linked = directory / "inputs" / "data" / "a.txt"
    assert linked.read_bytes() == b"one"
    assert (directory / "inputs" / "b.bin").read_bytes() == b"two"
    cached = cache.path_of(sha256_of(b"one"))
    assert os.stat(linked).st_ino == os.stat(cached).st_ino
    assert os.stat(cached).st_nlink == 2  # in use: eviction leaves it
    assert stat.S_IMODE(os.stat(linked).st_mode) == 0o444


def test_one_blob_at_two_paths_is_fetched_once(tmp_path, cache, served, state):
    state.blobs["/f/1"] = b"same"
    spec = spec_with(inputs=(ref("a", b"same", "/f/1"), ref("b", b"same", "/f/1")))

    assert inputs_place(attempt_dir(tmp_path), spec, cache) is None
    assert len(state.requests) == 1


def test_a_mismatching_renter_input_fails_the_job_naming_it(tmp_path, cache, served, state):
    state.blobs["/f/1"] = b"STATED"  # as long as stated, one byte off: a mismatch
    url = f"https://localhost:{served.port}/f/1"
    spec = spec_with(inputs=(ref("data/a.txt", b"stated", url, source="url"),))

    outcome = inputs_place(attempt_dir(tmp_path), spec, cache)

    assert outcome is not None
    assert (outcome.status, outcome.fault) == ("failed", "renter")
    assert outcome.reason.startswith("the input 'data/a.txt' could not be fetched: its sha256 is")


def test_a_failing_store_is_a_host_fault_naming_the_input(tmp_path, cache, served, state):
    state.status["/f/1"] = 503
    spec = spec_with(inputs=(ref("a.txt", b"x", "/f/1"),))

    outcome = inputs_place(attempt_dir(tmp_path), spec, cache)

    assert outcome is not None
    assert (outcome.status, outcome.fault, outcome.reason) == ("failed", "host", HOST_FETCH_REASON)
    assert outcome.detail == "the input 'a.txt': HTTP 503"


def test_an_agent_without_a_cache_is_a_host_fault(tmp_path):
    spec = spec_with(inputs=(ref("a", b"x", "/f"),))

    outcome = inputs_place(attempt_dir(tmp_path), spec, None)

    assert outcome is not None
    assert outcome.fault == "host"


# --- the code archive --------------------------------------------------------------------------


def test_the_code_archive_is_unpacked_and_inline_files_win(tmp_path, cache, served, state):
    archive = zip_of(
        {"main.py": b"archive's", "lib/util.py": b"u", "run.sh": b"#!/bin/sh", "lib/": b""},
        **{"run.sh": stat.S_IFREG | 0o755},
    )
    state.blobs["/f/code"] = archive
    directory = attempt_dir(tmp_path)
    (directory / "work" / "main.py").write_bytes(b"inline")
    spec = spec_with(code_archive=ref("code.zip", archive, "/f/code"))

    assert inputs_place(directory, spec, cache) is None

    work = directory / "work"
    assert (work / "main.py").read_bytes() == b"inline"
    assert (work / "lib" / "util.py").read_bytes() == b"u"
    assert stat.S_IMODE((work / "run.sh").stat().st_mode) == 0o755
    assert not (directory / "inputs").exists()


def test_an_archive_with_the_entrypoint_needs_no_inline_files(tmp_path):
    work = attempt_dir(tmp_path) / "work"

    written = archive_unpack(
        io.BytesIO(zip_of({"main.py": b"print(2)"})),
        work,
        inline=set(),
        entrypoint="main.py",
        max_bytes=100,
    )

    assert written == ["main.py"]


@pytest.mark.parametrize(
    ("members", "modes", "words"),
    [
        ({"../evil.py": b"x", "main.py": b""}, {}, "'..'"),
        ({"/abs.py": b"x", "main.py": b""}, {}, "absolute"),
        ({"link": b"/etc/passwd", "main.py": b""}, {"link": stat.S_IFLNK | 0o777}, "symbolic link"),
        ({"fifo": b"", "main.py": b""}, {"fifo": stat.S_IFIFO | 0o644}, "not a regular file"),
        ({"big.bin": b"x" * 2000, "main.py": b""}, {}, "more than 1000 bytes"),
        ({"a": b"x", "a/b": b"y", "main.py": b""}, {}, "both a file and a directory"),
        ({"other.py": b""}, {}, "entrypoint 'main.py' is neither in it nor in the files"),
    ],
)
def test_code_archives_the_agent_refuses(tmp_path, members, modes, words):
    work = attempt_dir(tmp_path) / "work"

    with pytest.raises(ArchiveError, match=words):
        archive_unpack(
            io.BytesIO(zip_of(members, **modes)),
            work,
            inline=set(),
            entrypoint="main.py",
            max_bytes=1000,
        )

    assert list(work.iterdir()) == []  # refused before anything was written


def test_a_member_named_twice_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", b"1")
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("main.py", b"2")

    with pytest.raises(ArchiveError, match="appears twice"):
        archive_unpack(buffer, tmp_path, inline=set(), entrypoint="main.py", max_bytes=100)


def test_a_header_that_lies_about_the_size_is_still_capped(tmp_path):
    # The central directory says 10 bytes; the member holds more. zipfile stops at the
    # declared size (and then fails its CRC): never more than the cap is written.
    data = zip_of({"main.py": b"x" * 5000})
    patched = data.replace((5000).to_bytes(4, "little"), (10).to_bytes(4, "little"))
    work = attempt_dir(tmp_path) / "work"

    with pytest.raises((ArchiveError, zipfile.BadZipFile)):
        archive_unpack(io.BytesIO(patched), work, inline=set(), entrypoint="main.py", max_bytes=100)

    assert sum(path.stat().st_size for path in work.rglob("*") if path.is_file()) <= 100


def test_a_refused_archive_fails_the_job_as_the_renters(tmp_path, cache, served, state):
    archive = zip_of({"../x": b"", "main.py": b""})
    state.blobs["/f/code"] = archive
    spec = spec_with(code_archive=ref("code.zip", archive, "/f/code"))

    outcome = inputs_place(attempt_dir(tmp_path), spec, cache)

    assert outcome is not None
    assert (outcome.status, outcome.fault) == ("failed", "renter")
    assert outcome.reason.startswith("the code archive is refused: the member '../x'")


def test_not_a_zip_is_refused(tmp_path):
    with pytest.raises(ArchiveError, match="not a zip file"):
        archive_unpack(io.BytesIO(b"PK no"), tmp_path, inline=set(), entrypoint="m", max_bytes=9)


# --- end to end with the process runtime -------------------------------------------------------


async def test_a_process_job_reads_its_input_and_its_archive_code(tmp_path, cache, served, state):
    # given: the input and the code archive in the store, the script in the archive
    data = os.urandom(300_000)
    source = (
        "import hashlib, os\n"
        "path = os.path.join(os.environ['COMMUNIPUTE_INPUTS'], 'data', 'x.bin')\n"
        "print(hashlib.sha256(open(path, 'rb').read()).hexdigest())\n"
    )
    archive = zip_of({"main.py": source.encode()})
    state.blobs.update({"/f/x": data, "/f/code": archive})
    work_root = tmp_path / "work"
    runtime = ProcessRuntime(RuntimeSettings(work_root=work_root), allow_unisolated=True)
    link = FakeLink()
    manager = RuntimeJobManager(runtime, uploader=lambda *a: None, options=FAST, blob_cache=cache)
    await manager.start(link)
    store = {"source": "store"}
    given = offer(
        files=[],
        inputs=[{"path": "data/x.bin", "sha256": sha256_of(data), "url": "/f/x", **store}],
        code_archive={"path": "code.zip", "sha256": sha256_of(archive), "url": "/f/code", **store},
    )

    # when
    await manager.on_offer(given)
    [finished] = await link.next_of("job.finished")

    # then
    assert (finished["status"], finished["exit_code"]) == ("succeeded", 0)
    assert log_as_stored(link.of("job.log")).strip() == hashlib.sha256(data).hexdigest()
    await manager.on_ack("ack", {"ack_id": link.id_of_last("job.finished")})
    await link.until(lambda: not manager.attempts, "the cleanup")
    assert not (work_root / "job-7-1").exists()
    assert os.stat(cache.path_of(sha256_of(data))).st_nlink == 1  # no longer in use
    await manager.stop()


async def test_a_failed_input_ends_the_job_before_it_runs(tmp_path, cache, served, state):
    state.blobs["/f/x"] = b"other bytes"
    runtime = ProcessRuntime(RuntimeSettings(work_root=tmp_path / "work"), allow_unisolated=True)
    link = FakeLink()
    manager = RuntimeJobManager(runtime, uploader=lambda *a: None, options=FAST, blob_cache=cache)
    await manager.start(link)
    url = f"https://localhost:{served.port}/f/x"
    given = offer(inputs=[{"path": "x", "sha256": SHA, "url": url, "source": "url", "size": 11}])

    await manager.on_offer(given)
    [finished] = await link.next_of("job.finished")

    assert finished["status"] == "failed"
    assert finished["reason"].startswith("the input 'x' could not be fetched: its sha256 is")
    assert "fault" not in finished
    assert [m["phase"] for m in link.of("job.started")] == ["preparing"]
    await manager.stop()


def test_the_agents_cache_follows_its_settings(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(
        '{"server": "https://cp.example.org/", "work_dir": "%s", "cache_max_mb": 3,'
        ' "fetch_max_mb": 2, "fetch_allow_networks": ["10.0.0.0/8"]}' % (tmp_path / "w")
    )

    cache = blob_cache_from_config(config_load(path, env={}))

    assert cache.root == tmp_path / "w" / "cache" / "blobs"
    assert cache.max_bytes == 3 * 1024 * 1024
    assert cache.server == "https://cp.example.org"
    assert cache.policy.max_bytes == 2 * 1024 * 1024
    assert [str(n) for n in cache.policy.allow_networks] == ["10.0.0.0/8"]
