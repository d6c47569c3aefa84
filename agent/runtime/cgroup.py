"""Reading a sandbox's resource counters from its cgroup, v2 or v1.

The cgroup of a container is found from its first process (``/proc/<pid>/cgroup``) and the
host's cgroup mounts (``/proc/self/mountinfo``). The parsers are pure functions so they are
tested without a kernel that has either layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024


@dataclass(frozen=True)
class CgroupMount:
    path: Path  # where it is mounted here
    root: str  # which part of the hierarchy the mount shows
    version: int  # 1 or 2
    controllers: frozenset[str]  # v1 only; empty for v2


@dataclass(frozen=True)
class CgroupDirs:
    """Where the counters of one cgroup live (v2: one directory; v1: one per controller)."""

    version: int
    cpu: Path
    memory: Path


@dataclass(frozen=True)
class CgroupCounters:
    cpu_usec: int
    memory_current_bytes: int
    memory_peak_bytes: int | None  # None: the kernel does not keep a peak (cgroup v2 < 5.19)


def mounts_parse(mountinfo: str) -> list[CgroupMount]:
    mounts = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, super_options = tail[0], tail[2]
        if fstype == "cgroup2":
            mounts.append(CgroupMount(Path(fields[4]), fields[3], 2, frozenset()))
        elif fstype == "cgroup":
            options = frozenset(super_options.split(","))
            mounts.append(CgroupMount(Path(fields[4]), fields[3], 1, options))
    return mounts


def memberships_parse(proc_cgroup: str) -> dict[str, str]:
    """Map controller -> path; the v2 unified membership is under the key ''."""
    memberships: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            memberships[controller] = parts[2]
    return memberships


def _under(mount: CgroupMount, path: str) -> Path:
    relative = path
    if mount.root != "/" and path.startswith(mount.root):
        relative = path[len(mount.root) :]
    return mount.path / relative.lstrip("/")


def dirs_find(memberships: dict[str, str], mounts: list[CgroupMount]) -> CgroupDirs | None:
    """Prefer the v1 memory and cpuacct controllers where mounted (hybrid hosts keep their
    controllers there); otherwise use the v2 unified hierarchy."""
    v1 = {name: mount for mount in mounts if mount.version == 1 for name in mount.controllers}
    if all(name in memberships and name in v1 for name in ("memory", "cpuacct")):
        return CgroupDirs(
            1,
            cpu=_under(v1["cpuacct"], memberships["cpuacct"]),
            memory=_under(v1["memory"], memberships["memory"]),
        )
    unified = next((mount for mount in mounts if mount.version == 2), None)
    if unified is not None and "" in memberships:
        directory = _under(unified, memberships[""])
        return CgroupDirs(2, cpu=directory, memory=directory)
    return None


def cpu_stat_usage_usec(cpu_stat: str) -> int:
    for line in cpu_stat.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value)
    raise ValueError("cpu.stat has no usage_usec")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def counters_read(dirs: CgroupDirs) -> CgroupCounters:
    """Raises OSError when the cgroup is gone (the container exited)."""
    if dirs.version == 2:
        peak_file = dirs.memory / "memory.peak"
        return CgroupCounters(
            cpu_usec=cpu_stat_usage_usec(_read(dirs.cpu / "cpu.stat")),
            memory_current_bytes=int(_read(dirs.memory / "memory.current")),
            memory_peak_bytes=int(_read(peak_file)) if peak_file.exists() else None,
        )
    return CgroupCounters(
        cpu_usec=int(_read(dirs.cpu / "cpuacct.usage")) // 1000,
        memory_current_bytes=int(_read(dirs.memory / "memory.usage_in_bytes")),
        memory_peak_bytes=int(_read(dirs.memory / "memory.max_usage_in_bytes")),
    )


def dirs_of_pid(pid: int, proc: Path = Path("/proc")) -> CgroupDirs | None:
    try:
        memberships = memberships_parse(_read(proc / str(pid) / "cgroup"))
        mounts = mounts_parse(_read(proc / "self" / "mountinfo"))
    except OSError:
        return None
    dirs = dirs_find(memberships, mounts)
    if dirs is None or not dirs.memory.is_dir():
        return None
    return dirs
