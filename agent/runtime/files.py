"""The job's files on the host: the per-attempt directory and the outputs that come back.

The attempt directory holds ``work/`` (the job's files; the sandbox's working directory),
``outputs/`` and ``meter/`` (the run container's CPU meter, agent/runtime/meter.py). All are
written by an untrusted process, so reading them back never follows a symbolic link, skips
anything that is not a regular file, and caps count and size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from agent.runtime import quota
from agent.runtime.meter import METER_DIR
from agent.runtime.types import DiskSpec, OutputFile

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_OUTPUT_DEPTH = 8
MAX_NAME_PART = 100


def attempt_dir_path(work_root: Path, job_id: int, attempt: int) -> Path:
    return work_root / f"job-{job_id}-{attempt}"


def attempt_dir_create(
    work_root: Path,
    job_id: int,
    attempt: int,
    files: Mapping[str, bytes],
    owner: str,
    *,
    disk_quota: DiskSpec | None = None,
) -> Path:
    """Write the job's files into a fresh attempt directory and hand it to ``owner`` (uid:gid).

    Names were validated by JobSpec; O_NOFOLLOW and O_EXCL still guard every write. A directory
    left by an earlier run of this attempt (an agent restarted mid-prepare) is replaced. With
    ``disk_quota``, ``work/`` and ``outputs/`` are size-limited file systems (quota.py) before
    anything is written into them.
    """
    work_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Also when it already existed: tree_hand_over may open work/ and outputs/ to everyone, so
    # this directory is what keeps the host's other users out of them.
    work_root.chmod(0o700)
    root = attempt_dir_path(work_root, job_id, attempt)
    if root.exists():
        tree_remove(root)
    root.mkdir(mode=0o755)
    work, outputs = root / "work", root / "outputs"
    work.mkdir()
    outputs.mkdir()
    (root / METER_DIR).mkdir()  # the run container's CPU meter (agent/runtime/meter.py)
    if disk_quota is not None:
        quota.mounts_create(root, disk_quota)
    for name, content in files.items():
        target = work.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(target, flags, 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
    tree_hand_over(root, owner)
    return root


def tree_hand_over(root: Path, owner: str) -> None:
    """Let the sandbox user write ``work/``, ``outputs/`` and ``meter/``.

    As root the agent chowns them to the sandbox user. An unprivileged agent can't, so it opens
    the three directories to everyone instead; ``work_root`` stays 0700, so no other host user
    can reach them, and the sandbox sees only its own bind mounts.
    """
    uid, gid = (int(part) for part in owner.split(":"))
    if os.geteuid() == 0:
        for directory, _dirs, names in os.walk(root):
            os.chown(directory, uid, gid)
            for name in names:
                os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)
        return
    for top in (root / "work", root / "outputs", root / METER_DIR):
        for directory, _dirs, _names in os.walk(top):
            os.chmod(directory, 0o777)  # noqa: S103 (see the docstring)


def tree_remove(root: Path) -> bool:
    """Remove a tree the sandbox wrote to; True when it is gone. rmtree never follows links.
    Quota mounts in it are released first (also those an earlier agent process left)."""
    quota.mounts_release(root)
    shutil.rmtree(root, ignore_errors=True)
    return not root.exists()


def output_name(parts: list[str]) -> str:
    """A safe, portable name for an output: [A-Za-z0-9._-] only, no hidden components."""
    safe = []
    for part in parts:
        cleaned = _UNSAFE.sub("_", part)[:MAX_NAME_PART]
        if cleaned.startswith("."):
            cleaned = "_" + cleaned[1:]
        safe.append(cleaned)
    return "/".join(safe)


def _regular_files(directory: Path, parts: list[str]) -> Iterator[tuple[list[str], Path]]:
    """Walk without following links; yield (name parts, path) of regular files, sorted."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if len(parts) + 1 < MAX_OUTPUT_DEPTH:
                yield from _regular_files(Path(entry.path), [*parts, entry.name])
        elif entry.is_file(follow_symlinks=False):
            yield [*parts, entry.name], Path(entry.path)


def _file_digest(path: Path, limit: int) -> tuple[int, str] | None:
    """(size, sha256) of a regular file opened without following a link; None if refused."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        digest = hashlib.sha256()
        size = 0
        while chunk := handle.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                return None
            digest.update(chunk)
    return size, digest.hexdigest()


def outputs_collect(outputs_dir: Path, max_bytes: int, max_files: int) -> list[OutputFile]:
    """The regular files under ``outputs_dir``, in name order, within the size and count caps.

    A file that would pass the total size cap is skipped (and logged), so the smaller files
    after it still come back; links, devices, FIFOs and sockets are never read.
    """
    collected: list[OutputFile] = []
    used_names: set[str] = set()
    total = 0
    for parts, path in _regular_files(outputs_dir, []):
        if len(collected) >= max_files:
            log.warning("outputs: more than %d files; the rest are not collected", max_files)
            break
        measured = _file_digest(path, max_bytes - total)
        if measured is None:
            log.warning("outputs: skipped %s (over the size cap or not a regular file)", path)
            continue
        size, sha256 = measured
        name = output_name(parts)
        stem, suffix = name, 2
        while name in used_names:
            name = f"{stem}-{suffix}"
            suffix += 1
        used_names.add(name)
        total += size
        collected.append(OutputFile(name=name, size=size, sha256=sha256, path=path))
    return collected
