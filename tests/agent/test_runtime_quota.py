"""Disk quotas (agent/runtime/quota.py): /work and /outputs as loop-mounted ext4 images.

The first tests need root and loop devices (this is what the agent's ``auto`` probe checks);
the ``docker`` ones run real containers against those mounts.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from agent.runtime import Outcome, quota
from agent.runtime.docker_runtime import DockerRuntime
from agent.runtime.files import attempt_dir_create, tree_remove
from agent.runtime.reasons import HOST_QUOTA_REASON
from agent.runtime.types import DiskSpec, host_fault
from tests.agent.test_runtime_docker import run_to_end, runtime_for, settings_for, spec_for

MB = 1024 * 1024


def _quota_problem() -> str:
    return quota.probe(Path("/tmp") / "communipute-quota-probe")


needs_loop = pytest.mark.skipif(
    os.geteuid() != 0 or bool(_quota_problem()), reason="disk quotas need root and loop devices"
)


def loops_of(directory: Path) -> list[str]:
    """Loop devices backed by files under ``directory``, as losetup itself lists them."""
    listed = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True)
    return [line for line in listed.stdout.splitlines() if str(directory) in line]


def free_mb(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize // MB


@needs_loop
def test_an_attempt_directory_gets_its_sizes_as_file_systems_and_gives_them_back(tmp_path):
    # given
    disk = DiskSpec(work_mb=40, outputs_mb=24, tmp_mb=16)

    # when
    root = attempt_dir_create(
        tmp_path, 7, 1, {"main.py": b"print(1)\n"}, "65534:65534", disk_quota=disk
    )

    # then: two file systems of (about) the job's sizes, the job's file in /work only
    work, outputs = os.statvfs(root / "work"), os.statvfs(root / "outputs")
    assert 36 * MB < work.f_blocks * work.f_frsize <= 40 * MB
    assert 20 * MB < outputs.f_blocks * outputs.f_frsize <= 24 * MB
    assert sorted(os.listdir(root / "work")) == ["main.py"]
    assert os.listdir(root / "outputs") == []
    assert sorted(quota.mounts_under(root)) == [str(root / "outputs"), str(root / "work")]
    assert len(loops_of(root)) == 2
    # sparse: a fresh image takes almost no disk
    assert quota.image_path(root, "work").stat().st_blocks * 512 < 4 * MB
    options = {line.split()[4]: line.split()[5] for line in _mountinfo() if str(root) in line}
    assert "noexec" in options[str(root / "work")].split(",")
    assert {"nosuid", "nodev"} <= set(options[str(root / "outputs")].split(","))

    # when
    assert tree_remove(root)

    # then
    assert quota.mounts_under(root) == []
    assert loops_of(root) == []


@needs_loop
def test_release_is_idempotent_and_finds_what_an_earlier_process_left(tmp_path):
    # given: mounted by "an earlier agent", then its image deleted while still attached
    root = attempt_dir_create(
        tmp_path,
        8,
        2,
        {"main.py": b""},
        "65534:65534",
        disk_quota=DiskSpec(work_mb=16, outputs_mb=16),
    )
    leaked = subprocess.run(
        ["losetup", "--find", "--show", str(quota.image_path(root, "outputs"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert leaked in quota.loop_devices_under(root)

    # when: a new process knows nothing but the directory
    quota.mounts_release(root)
    quota.mounts_release(root)

    # then
    assert quota.mounts_under(root) == []
    assert loops_of(root) == []
    assert not quota.image_path(root, "work").exists()


@needs_loop
def test_work_exec_leaves_work_executable(tmp_path):
    root = attempt_dir_create(
        tmp_path,
        9,
        1,
        {"main.py": b""},
        "65534:65534",
        disk_quota=DiskSpec(work_mb=16, outputs_mb=16, work_exec=True),
    )
    try:
        options = {line.split()[4]: line.split()[5] for line in _mountinfo() if str(root) in line}
        assert "noexec" not in options[str(root / "work")].split(",")
        assert "noexec" in options[str(root / "outputs")].split(",")
    finally:
        tree_remove(root)


@needs_loop
def test_a_full_directory_is_found_and_an_empty_one_is_not(tmp_path):
    # given
    root = attempt_dir_create(
        tmp_path,
        10,
        1,
        {"main.py": b""},
        "65534:65534",
        disk_quota=DiskSpec(work_mb=16, outputs_mb=16),
    )
    try:
        assert quota.full_directory(root) is None
        # when
        assert _fill(root / "outputs" / "x") == errno.ENOSPC
        # then
        assert quota.full_directory(root) == "outputs"
        held = quota.image_path(root, "outputs").stat().st_blocks * 512 // MB
        assert held >= 12
        assert quota.outstanding_mb(root, DiskSpec(work_mb=16, outputs_mb=16)) == 32 - held
    finally:
        tree_remove(root)


def _fill(path: Path) -> int | None:
    """Write MB after MB to ``path`` until the file system refuses; the errno it gave."""
    with open(path, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * MB)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            return exc.errno
    return None


def _mountinfo() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


# --- with Docker ---------------------------------------------------------------------------

FILL_WORK = """\
import errno, json, os
written, code = 0, None
try:
    with open("/work/fill", "wb") as handle:
        while written < 256:  # never more than this, should the quota not hold
            handle.write(b"x" * (1 << 20))
            handle.flush()
            written += 1
except OSError as exc:
    code = exc.errno
print(json.dumps({"errno": code, "enospc": code == errno.ENOSPC, "mb": written}), flush=True)
raise SystemExit(1)
"""


@pytest.mark.docker
@needs_loop
def test_a_job_writing_past_its_work_limit_gets_enospc_and_a_clear_reason(tmp_path):
    with runtime_for(tmp_path) as runtime:
        # given
        assert runtime.disk_quota_active()
        spec = spec_for(FILL_WORK, disk=DiskSpec(work_mb=32, outputs_mb=16, tmp_mb=16))
        before = free_mb(tmp_path)

        # when
        finished = run_to_end(runtime, spec)

        # then
        report = json.loads(finished.logs.strip().splitlines()[-1])
        assert (report["errno"], report["enospc"]) == (28, True)
        assert 24 <= report["mb"] <= 32
        assert finished.outcome == Outcome(
            "failed", "the job ran out of space in /work (its 32 MB limit)", 1
        )
        runtime.cleanup(finished.handle)
        # the host's disk is where it was (other processes on the host move it a little)
        assert before - free_mb(tmp_path) < 8
        assert quota.mounts_under(finished.handle.attempt_dir) == []
        assert loops_of(tmp_path) == []
        assert not finished.handle.attempt_dir.exists()


@pytest.mark.docker
@needs_loop
def test_a_failure_with_room_left_keeps_its_own_reason(tmp_path):
    with runtime_for(tmp_path) as runtime:
        finished = run_to_end(
            runtime, spec_for("open('/work/a', 'w').write('x')\nraise SystemExit(4)\n")
        )
        assert finished.outcome == Outcome("failed", "exit code 4", 4)


EXEC_PROBE = """\
import errno, json, os, shutil, subprocess
shutil.copy("/bin/true", "/work/true")
os.chmod("/work/true", 0o755)
try:
    subprocess.run(["/work/true"], check=True)
    result = "ran"
except OSError as exc:
    result = errno.errorcode[exc.errno]
print(json.dumps({"work_exec": result}))
"""


@pytest.mark.docker
@needs_loop
@pytest.mark.parametrize(("work_exec", "expected"), [(False, "EACCES"), (True, "ran")])
def test_work_is_noexec_unless_the_job_asks(tmp_path, work_exec, expected):
    with runtime_for(tmp_path) as runtime:
        spec = spec_for(EXEC_PROBE, disk=DiskSpec(work_mb=16, outputs_mb=16, work_exec=work_exec))
        finished = run_to_end(runtime, spec)
        assert finished.outcome.status == "succeeded", finished.logs
        assert json.loads(finished.logs.strip().splitlines()[-1]) == {"work_exec": expected}


FILL_TMP = """\
import errno, json
written = 0
try:
    with open("/tmp/fill", "wb") as handle:
        while True:
            handle.write(b"x" * (1 << 20))
            handle.flush()
            written += 1
except OSError as exc:
    print(json.dumps({"errno": errno.errorcode[exc.errno], "mb": written}))
"""


@pytest.mark.docker
@needs_loop
def test_tmp_is_full_at_tmp_mb(tmp_path):
    with runtime_for(tmp_path) as runtime:
        spec = spec_for(
            FILL_TMP, memory_mb=256, disk=DiskSpec(work_mb=16, outputs_mb=16, tmp_mb=24)
        )
        finished = run_to_end(runtime, spec)
        assert finished.outcome.status == "succeeded", finished.logs
        report = json.loads(finished.logs.strip().splitlines()[-1])
        assert report["errno"] == "ENOSPC"
        assert 22 <= report["mb"] <= 24


@pytest.mark.docker
@needs_loop
def test_an_attempt_found_after_a_restart_is_killed_without_leaking_mounts(tmp_path):
    # given: a running job of an agent that then went away
    settings = settings_for(tmp_path / "jobs")
    first = DockerRuntime(settings)
    spec = spec_for("import time\ntime.sleep(60)\n", disk=DiskSpec(work_mb=16, outputs_mb=16))
    handle = first.start(first.prepare(spec))
    assert len(quota.mounts_under(handle.attempt_dir)) == 2

    # when: the next agent process kills it (the server did not keep it)
    again = DockerRuntime(settings)
    assert [owned.job_id for owned in again.list_own()] == [1]
    again.kill(1, 1)
    again.kill(1, 1)

    # then
    assert again.list_own() == []
    assert quota.mounts_under(tmp_path) == []
    assert loops_of(tmp_path) == []
    assert not handle.attempt_dir.exists()


@pytest.mark.docker
def test_quotas_off_mount_nothing(tmp_path):
    with runtime_for(tmp_path, disk_quotas="off") as runtime:
        assert not runtime.disk_quota_active()
        prepared = runtime.prepare(spec_for("print(1)\n"))
        assert quota.mounts_under(prepared.attempt_dir) == []
        assert not quota.image_path(prepared.attempt_dir, "work").exists()


@pytest.mark.docker
def test_quotas_on_where_they_do_not_work_is_not_ready_and_runs_nothing(tmp_path, monkeypatch):
    # given
    monkeypatch.setattr(quota, "probe", lambda _parent: "no loop devices here")

    with runtime_for(tmp_path, disk_quotas="on") as runtime:
        # then
        assert runtime.readiness_check() == (
            "disk quotas are on (disk_quotas) but do not work here: no loop devices here"
        )
        assert not runtime.disk_quota_active()
        prepared = runtime.prepare(spec_for("print(1)\n"))
        assert prepared.failure == host_fault(HOST_QUOTA_REASON, "no loop devices here")
        assert not prepared.attempt_dir.exists()


@pytest.mark.docker
def test_quotas_auto_where_they_do_not_work_runs_without(tmp_path, monkeypatch):
    monkeypatch.setattr(quota, "probe", lambda _parent: "no loop devices here")

    with runtime_for(tmp_path, disk_quotas="auto") as runtime:
        assert runtime.readiness_check() == ""
        assert not runtime.disk_quota_active()
        prepared = runtime.prepare(spec_for("print(1)\n"))
        assert prepared.failure is None
        assert quota.mounts_under(prepared.attempt_dir) == []
