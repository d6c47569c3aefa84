"""Finding and reading a container's cgroup counters, v1 and v2 (no Docker needed)."""

from pathlib import Path

from agent.runtime.cgroup import (
    CgroupCounters,
    CgroupDirs,
    counters_read,
    dirs_find,
    memberships_parse,
    mounts_parse,
)

CID = "f1e6996e4d0f"

V1_MOUNTINFO = """\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
40 25 8:1 / / rw,relatime - ext4 /dev/vda rw
"""
V1_PROC_CGROUP = f"""\
4:memory:/docker/{CID}
2:cpu,cpuacct:/docker/{CID}
0::/docker/{CID}
"""
V2_MOUNTINFO = "35 25 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V2_PROC_CGROUP = f"0::/system.slice/docker-{CID}.scope\n"


def test_v1_controllers_are_preferred_on_a_hybrid_host():
    dirs = dirs_find(memberships_parse(V1_PROC_CGROUP), mounts_parse(V1_MOUNTINFO))

    assert dirs == CgroupDirs(
        1,
        cpu=Path(f"/sys/fs/cgroup/cpu,cpuacct/docker/{CID}"),
        memory=Path(f"/sys/fs/cgroup/memory/docker/{CID}"),
    )


def test_v2_uses_the_unified_directory():
    dirs = dirs_find(memberships_parse(V2_PROC_CGROUP), mounts_parse(V2_MOUNTINFO))

    directory = Path(f"/sys/fs/cgroup/system.slice/docker-{CID}.scope")
    assert dirs == CgroupDirs(2, cpu=directory, memory=directory)


def test_a_mount_of_a_subtree_is_resolved_relative_to_its_root():
    mountinfo = "35 25 0:30 /docker /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"

    dirs = dirs_find(memberships_parse(f"0::/docker/{CID}\n"), mounts_parse(mountinfo))

    assert dirs is not None
    assert dirs.memory == Path(f"/sys/fs/cgroup/{CID}")


def test_v2_counters_with_and_without_memory_peak(tmp_path):
    # given
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (tmp_path / "memory.current").write_text("10485760\n")
    dirs = CgroupDirs(2, cpu=tmp_path, memory=tmp_path)

    # when / then: kernels before 5.19 keep no peak; the runtime then tracks it itself
    assert counters_read(dirs) == CgroupCounters(2_500_000, 10_485_760, None)
    (tmp_path / "memory.peak").write_text("20971520\n")
    assert counters_read(dirs) == CgroupCounters(2_500_000, 10_485_760, 20_971_520)


def test_v1_counters(tmp_path):
    # given
    cpu, memory = tmp_path / "cpu", tmp_path / "memory"
    cpu.mkdir()
    memory.mkdir()
    (cpu / "cpuacct.usage").write_text("1500000000\n")
    (memory / "memory.usage_in_bytes").write_text("1048576\n")
    (memory / "memory.max_usage_in_bytes").write_text("3145728\n")

    # when
    counters = counters_read(CgroupDirs(1, cpu=cpu, memory=memory))

    # then
    assert counters == CgroupCounters(1_500_000, 1_048_576, 3_145_728)
