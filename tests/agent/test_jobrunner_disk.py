"""The offer's disk limits: parsed into the JobSpec, refused when the host can never give
them, ``busy`` when the free disk can't cover them next to the running jobs, and what hello
says about the host's disk."""

from __future__ import annotations

import dataclasses

import pytest

from agent.jobrunner import runtime_manager
from agent.jobrunner.offer import spec_from_offer
from agent.jobrunner.runtime_manager import Capacity, RuntimeJobManager
from agent.runtime.types import DiskSpec, JobSpecError
from tests.agent.jobrunner_fakes import FAST, FakeLink, FakeRuntime, FakeUploader, offer


@pytest.fixture
def runtime(tmp_path):
    return FakeRuntime(tmp_path / "work")


@pytest.fixture
def link():
    return FakeLink()


@pytest.fixture
def free_disk(monkeypatch):
    """The host's free disk under the work root, in MB, as the test sets it."""
    state = {"mb": 5000}
    monkeypatch.setattr(runtime_manager, "_disk_free_mb", lambda _root: state["mb"])
    return state


async def manager_for(runtime, link, tmp_path, **capacity) -> RuntimeJobManager:
    manager = RuntimeJobManager(
        runtime,
        uploader=FakeUploader(),
        capacity=Capacity(**{"slots": 4, "work_root": tmp_path / "work", **capacity}),
        options=dataclasses.replace(FAST),
    )
    await manager.start(link)
    return manager


def with_disk(job_id: int, work_mb: int, outputs_mb: int, tmp_mb: int = 64, work_exec=False):
    disk = {"work_mb": work_mb, "outputs_mb": outputs_mb, "tmp_mb": tmp_mb, "work_exec": work_exec}
    return offer(job_id=job_id, disk=disk)


def rejects(link: FakeLink) -> dict[int, tuple[str, str]]:
    return {r["job_id"]: (r["code"], r["reason"]) for r in link.of("job.reject")}


def test_an_offer_without_disk_gets_the_default_limits():
    assert spec_from_offer(offer()).disk == DiskSpec(1024, 1024, 256, False)


def test_the_offers_disk_limits_become_the_specs():
    spec = spec_from_offer(with_disk(1, 300, 200, 100, work_exec=True))

    assert spec.disk == DiskSpec(work_mb=300, outputs_mb=200, tmp_mb=100, work_exec=True)
    assert spec.disk.host_disk_mb == 500


@pytest.mark.parametrize(
    ("disk", "message"),
    [
        ({"work_mb": 0}, "disk.work_mb must be within 1..16777216, not 0"),
        ({"tmp_mb": 16 * 1024 * 1024 + 1}, "disk.tmp_mb must be within 1..16777216"),
        ({"outputs_mb": True}, "disk.outputs_mb must be a whole number of MB, not True"),
        ({"work_exec": "yes"}, "disk.work_exec must be true or false, not 'yes'"),
    ],
)
def test_bad_disk_limits_are_refused_naming_the_field(disk, message):
    given = {"work_mb": 10, "outputs_mb": 10, "tmp_mb": 10, "work_exec": False, **disk}

    with pytest.raises(JobSpecError, match=message.replace(".", r"\.")):
        spec_from_offer(offer(disk=given))


async def test_a_job_bigger_than_the_hosts_per_job_disk_is_refused(
    runtime, link, tmp_path, free_disk
):
    # given
    manager = await manager_for(runtime, link, tmp_path, job_disk_max_mb=2000)

    # when
    await manager.on_offer(with_disk(1, 1024, 1024))

    # then
    assert rejects(link) == {1: ("refused", "the job needs 2048 MB of disk; the host allows 2000")}
    assert runtime.calls == []
    assert manager.running_jobs() == []
    await manager.stop()


async def test_a_job_is_busy_when_free_disk_cannot_cover_it_next_to_the_running_ones(
    runtime, link, tmp_path, free_disk
):
    # given 5000 MB free, 1000 MB kept back, a job that may still write 2048 MB
    manager = await manager_for(runtime, link, tmp_path, disk_reserve_mb=1000, job_disk_max_mb=3000)
    await manager.on_offer(with_disk(1, 1024, 1024))
    await link.until(lambda: ("start", 1, 1) in runtime.calls, "the first job starts")

    # when
    await manager.on_offer(with_disk(2, 1024, 1024))
    await manager.on_offer(with_disk(3, 1000, 952))

    # then: 5000 - 1000 - 2048 = 1952 MB are left for the next job
    assert rejects(link) == {
        2: ("busy", "busy: 1952 MB of disk free for jobs; the job needs 2048 MB")
    }
    assert [a["job_id"] for a in link.of("job.accept")] == [1, 3]
    await manager.stop()


async def test_hello_says_whether_quotas_hold_and_the_most_one_job_may_ask(
    runtime, link, tmp_path, free_disk
):
    # given
    manager = await manager_for(runtime, link, tmp_path, slots=2, disk_reserve_mb=1000)

    # then: a slot's share of what is free beyond the reserve
    assert manager.host_disk() == (False, 2000)
    runtime.disk_quota = True
    free_disk["mb"] = 600
    assert manager.host_disk() == (True, 0)
    await manager.stop()


async def test_the_owners_per_job_disk_is_capped_by_what_is_free(
    runtime, link, tmp_path, free_disk
):
    manager = await manager_for(runtime, link, tmp_path, job_disk_max_mb=3000, disk_reserve_mb=0)

    assert manager.host_disk() == (False, 3000)
    free_disk["mb"] = 2500
    assert manager.host_disk() == (False, 2500)
    await manager.stop()


async def test_without_a_work_root_disk_is_not_counted(runtime, link, tmp_path):
    manager = await manager_for(runtime, link, tmp_path, work_root=None)

    await manager.on_offer(with_disk(1, 10_000_000, 10_000_000))

    assert manager.host_disk() is None
    assert [a["job_id"] for a in link.of("job.accept")] == [1]
    await manager.stop()
