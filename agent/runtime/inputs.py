"""An attempt's data, placed after the install step: inputs linked, the code archive unpacked.

``<attempt_dir>/inputs/<path>`` are hard links to the verified cache files (agent/runtime/
blobcache.py): no copy, and a link is what keeps the cache from evicting a file an attempt
uses. The run container mounts the directory read-only at /inputs, and the files are 0444
and the agent's, so the job can read but never change what the next renter's job will read.

The code archive is a zip the renter uploaded (checked by the server too, but the agent trusts
no archive): every member name as strict as a job file name, no links or special files, not
encrypted, the uncompressed total capped, written with O_EXCL|O_NOFOLLOW. Inline ``files``
win on a clash: a member that is, contains or sits under an inline file is skipped.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from agent.runtime.blobcache import BlobCache, FetchError
from agent.runtime.reasons import HOST_DISK_REASON, HOST_PREPARE_REASON
from agent.runtime.types import JobSpec, JobSpecError, Outcome, host_fault, path_validate

log = logging.getLogger(__name__)

INPUTS_DIR = "inputs"
INPUTS_MOUNT = "/inputs"
HOST_FETCH_REASON = "the host could not fetch the job's inputs"
# The server's default JOB_WORK_MB: what a code archive may unpack to when the offer names no
# work disk size.
ARCHIVE_MAX_BYTES = 1024 * 1024 * 1024
ARCHIVE_MAX_MEMBERS = 10_000
_COPY_BYTES = 64 * 1024


class ArchiveError(ValueError):
    """The code archive is refused; the message says why (the renter's fault)."""


def inputs_place(
    attempt_dir: Path,
    spec: JobSpec,
    cache: BlobCache | None,
    *,
    is_cancelled: Callable[[], bool] = lambda: False,
    archive_max_bytes: int = ARCHIVE_MAX_BYTES,
) -> Outcome | None:
    """Fetch and place the attempt's inputs and code archive; a failed Outcome naming the
    input (renter's or host's fault), or None. Raises FetchCancelled when cancelled."""
    if not spec.inputs and spec.code_archive is None:
        return None
    if cache is None:
        return host_fault(HOST_FETCH_REASON, "this agent has no blob cache configured")
    # A pool job's URL inputs: the pool's rules where the host takes them, cached apart, the
    # host's credentials (agent/runtime/blobcache.py, docs/pools.md "Inputs stay inside").
    scope = cache.scope_for(spec.pool)
    try:
        if spec.code_archive is not None:
            handle = cache.fetch(spec.code_archive, _open, is_cancelled=is_cancelled)
            with handle:
                archive_unpack(
                    handle,
                    attempt_dir / "work",
                    inline=set(spec.files),
                    entrypoint=spec.entrypoint,
                    max_bytes=archive_max_bytes,
                )
        if spec.inputs:
            inputs = attempt_dir / INPUTS_DIR
            inputs.mkdir(mode=0o755, exist_ok=True)
            for ref in spec.inputs:
                target = inputs.joinpath(*ref.path.split("/"))
                target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                try:
                    cache.fetch(ref, _linker(target), is_cancelled=is_cancelled, scope=scope)
                except FetchError as exc:
                    return _fetch_failure(f"the input {ref.path!r}", exc)
    except FetchError as exc:
        return _fetch_failure("the code archive", exc)
    except ArchiveError as exc:
        return Outcome("failed", f"the code archive is refused: {exc}")
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return host_fault(HOST_DISK_REASON, f"{type(exc).__name__}: {exc}")
        return host_fault(HOST_PREPARE_REASON, f"{type(exc).__name__}: {exc}")
    return None


def _fetch_failure(what: str, exc: FetchError) -> Outcome:
    if exc.fault == "renter":
        return Outcome("failed", f"{what} could not be fetched: {exc}")
    return host_fault(HOST_FETCH_REASON, f"{what}: {exc}")


def _linker(target: Path) -> Callable[[Path], None]:
    return lambda source: _link(source, target)


def _open(path: Path) -> BinaryIO:
    """Opened while the cache holds its lock: eviction can unlink it later, the file stays."""
    return path.open("rb")


def _link(source: Path, target: Path) -> None:
    """A hard link; a copy where the attempt dir is on another file system than the cache
    (it then no longer pins the cache file, which may be evicted; the copy stays)."""
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        log.warning("inputs: %s is on another file system than the cache; copying", target)
        shutil.copyfile(source, target, follow_symlinks=False)
        os.chmod(target, 0o444)


def archive_unpack(
    source: BinaryIO,
    work: Path,
    *,
    inline: set[str],
    entrypoint: str,
    max_bytes: int,
) -> list[str]:
    """Unpack a code archive into ``work`` (which already holds the inline files); the member
    names written. ArchiveError before anything is written when the archive is refused."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"it is not a zip file ({exc})") from None
    with archive:
        members = _members_checked(archive, max_bytes)
        files = {name for name, info in members if not info.is_dir()}
        if entrypoint not in files and entrypoint not in inline:
            raise ArchiveError(f"the entrypoint {entrypoint!r} is neither in it nor in the files")
        owner = _owner_of(work)
        written: list[str] = []
        total = 0
        for name, info in members:
            if _shadowed(name, inline):
                continue
            target = work.joinpath(*name.split("/"))
            _dirs_make(work, target.parent, owner)
            if info.is_dir():
                _dirs_make(work, target, owner)
                continue
            mode = 0o755 if (info.external_attr >> 16) & 0o100 else 0o644
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            with os.fdopen(descriptor, "wb") as handle, archive.open(info) as member:
                while chunk := member.read(_COPY_BYTES):
                    total += len(chunk)
                    if total > max_bytes:
                        raise ArchiveError(f"it unpacks to more than {max_bytes} bytes")
                    handle.write(chunk)
            _hand_over(target, owner)
            written.append(name)
        return written


def _members_checked(archive: zipfile.ZipFile, max_bytes: int) -> list[tuple[str, zipfile.ZipInfo]]:
    infos = archive.infolist()
    if len(infos) > ARCHIVE_MAX_MEMBERS:
        raise ArchiveError(f"it has more than {ARCHIVE_MAX_MEMBERS} members")
    members: list[tuple[str, zipfile.ZipInfo]] = []
    seen: set[str] = set()
    declared = 0
    for info in infos:
        name = info.filename.rstrip("/") if info.is_dir() else info.filename
        try:
            path_validate(name)
        except JobSpecError as exc:
            raise ArchiveError(f"the member {info.filename!r}: {exc}") from None
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise ArchiveError(f"the member {name!r} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"the member {name!r} is not a regular file or a directory")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"the member {name!r} is encrypted")
        if name in seen:
            raise ArchiveError(f"the member {name!r} appears twice")
        seen.add(name)
        declared += info.file_size
        if declared > max_bytes:
            raise ArchiveError(f"it unpacks to more than {max_bytes} bytes")
        members.append((name, info))
    files = {name for name, info in members if not info.is_dir()}
    for name, _info in members:
        for parent in PurePosixPath(name).parents:
            if str(parent) in files:
                raise ArchiveError(f"{str(parent)!r} is both a file and a directory in it")
    return members


def _shadowed(name: str, inline: set[str]) -> bool:
    """True when an inline file wins over this member (same path, or one is the other's
    directory)."""
    if name in inline:
        return True
    if any(str(parent) in inline for parent in PurePosixPath(name).parents):
        return True
    prefix = name + "/"
    return any(path.startswith(prefix) for path in inline)


def _owner_of(work: Path) -> tuple[int, int, int]:
    info = os.stat(work, follow_symlinks=False)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def _dirs_make(work: Path, directory: Path, owner: tuple[int, int, int]) -> None:
    missing = []
    current = directory
    while current != work and not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir(mode=0o755)
        _hand_over(path, owner)
        if owner[2] == 0o777 and os.geteuid() != 0:
            os.chmod(path, 0o777)  # noqa: S103 (as tree_hand_over opens work/: files.py)


def _hand_over(path: Path, owner: tuple[int, int, int]) -> None:
    """Give what was unpacked to whoever owns work/ (the sandbox user, as files.py did)."""
    if os.geteuid() == 0:
        os.chown(path, owner[0], owner[1], follow_symlinks=False)
