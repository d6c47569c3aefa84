"""Disk quotas for a job: /work and /outputs as loop-mounted ext4 images of the job's sizes.

Docker has no size limit for a bind mount, and XFS project quotas need a file system the host
owner chose for it. A sparse image per directory works on any Linux host where the agent is
root and loop devices exist: the job gets ENOSPC at its limit, the host's disk never fills,
and the image takes only the disk the job wrote (it is sparse). The mounts are ``nosuid,
nodev`` and /work ``noexec`` unless the job asked for ``work_exec`` (a bind mount keeps its
source's mount flags, so the container sees them too).

Everything here is idempotent and keyed by the attempt directory alone, so an agent that
restarted finds (in /proc/self/mountinfo and /sys/block/loop*) what an earlier one mounted
and releases it: no mount and no loop device outlives its attempt directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from agent.runtime.types import DiskSpec

log = logging.getLogger(__name__)

MB = 1024 * 1024
# The quota'd directories of an attempt and their images (beside them, never mounted).
QUOTA_DIRS = ("work", "outputs")
IMAGE_SUFFIX = ".img"
# No journal (the files are scratch: an attempt never outlives a crash), no blocks reserved
# for root, and the inode tables initialised lazily so a fresh image stays sparse.
MKFS_ARGS = ("-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard")
# The kernel's lazy inode-table zeroing would write (and allocate) the tables in the background.
MOUNT_OPTIONS = ("loop", "nosuid", "nodev", "noinit_itable")
PROBE_MB = 8
COMMAND_TIMEOUT_SECONDS = 60
# A file system with less than this much room left (or no free inode) counts as full.
FULL_MARGIN_BYTES = 1 * MB
_TOOLS = ("mkfs.ext4", "mount", "umount", "losetup")


class QuotaError(OSError):
    """A quota'd directory could not be made; the message says which step failed."""


def image_path(attempt_dir: Path, name: str) -> Path:
    return attempt_dir / f"{name}{IMAGE_SUFFIX}"


def mounts_create(attempt_dir: Path, disk: DiskSpec) -> None:
    """Mount a fresh image of its size on ``work/`` and ``outputs/`` (both must exist, empty).
    On failure whatever was mounted is released again and QuotaError raised."""
    sizes = {"work": disk.work_mb, "outputs": disk.outputs_mb}
    try:
        for name in QUOTA_DIRS:
            exec_allowed = disk.work_exec if name == "work" else False
            _mount_one(image_path(attempt_dir, name), attempt_dir / name, sizes[name], exec_allowed)
    except BaseException:
        mounts_release(attempt_dir)
        raise


def _mount_one(image: Path, target: Path, size_mb: int, exec_allowed: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    descriptor = os.open(image, flags, 0o600)
    try:
        os.ftruncate(descriptor, size_mb * MB)  # sparse: no disk is taken until written
    finally:
        os.close(descriptor)
    _run(["mkfs.ext4", *MKFS_ARGS, str(image)], "mkfs.ext4")
    options = [*MOUNT_OPTIONS, *([] if exec_allowed else ["noexec"])]
    _run(["mount", "-o", ",".join(options), str(image), str(target)], "mount")
    # The job's directory should hold its files only; e2fsck would make one again if needed.
    with contextlib.suppress(OSError):
        (target / "lost+found").rmdir()


def mounts_release(attempt_dir: Path) -> None:
    """Unmount everything under ``attempt_dir``, detach the loop devices backed by files in it
    and delete the images. Idempotent; a no-op where nothing was mounted (also as non-root)."""
    for mount_point in sorted(mounts_under(attempt_dir), key=len, reverse=True):
        if _command(["umount", mount_point]) != 0:
            # Still in use (a container being torn down): detach it from the tree now; the
            # kernel frees it, and its loop device (autoclear), with the last user.
            _command(["umount", "-l", mount_point])
    for device in loop_devices_under(attempt_dir):
        _command(["losetup", "-d", device])
    for name in QUOTA_DIRS:
        with contextlib.suppress(FileNotFoundError):
            image_path(attempt_dir, name).unlink()


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory`` (this process's mount namespace)."""
    prefix = str(directory).rstrip("/")
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape(fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def loop_devices_under(directory: Path) -> list[str]:
    """Loop devices whose backing file is (or was, if deleted) below ``directory``."""
    prefix = str(directory).rstrip("/") + "/"
    devices = []
    for backing in sorted(Path("/sys/block").glob("loop*/loop/backing_file")):
        try:
            name = backing.read_text().strip().removesuffix(" (deleted)")
        except OSError:
            continue
        if name.startswith(prefix):
            devices.append(f"/dev/{backing.parent.parent.name}")
    return devices


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field


def is_mounted(directory: Path) -> bool:
    return str(directory).rstrip("/") in mounts_under(directory)


def full_directory(attempt_dir: Path) -> str | None:
    """The quota'd directory ("work" or "outputs") that is full, or None: less than
    ``FULL_MARGIN_BYTES`` (or 1 %) of room or no inode left. Only mounted images count: a
    plain directory shares the host's disk and says nothing about the job's limit."""
    for name in QUOTA_DIRS:
        directory = attempt_dir / name
        if not is_mounted(directory):
            continue
        try:
            stats = os.statvfs(directory)
        except OSError:
            continue
        room = stats.f_bavail * stats.f_frsize
        margin = max(FULL_MARGIN_BYTES, stats.f_blocks * stats.f_frsize // 100)
        if room < margin or (stats.f_files and stats.f_favail == 0):
            return name
    return None


def outstanding_mb(attempt_dir: Path, disk: DiskSpec | None) -> int:
    """The host disk the attempt may still take: its limits less what its images hold now
    (the host's free disk already counts that part); no image yet: all of it. Without the
    job's limits (an attempt found after a restart) its images' sizes are the limits."""
    owed = 0
    for name in QUOTA_DIRS:
        try:
            info = os.stat(image_path(attempt_dir, name))
            size, held = info.st_size // MB, info.st_blocks * 512 // MB
        except OSError:
            size, held = 0, 0
        if disk is not None:
            size = disk.work_mb if name == "work" else disk.outputs_mb
        owed += max(0, size - held)
    return owed


def probe(scratch_parent: Path) -> str:
    """ "" when a loop-mounted ext4 image works here (root, the tools, a loop device, a write
    that stops at the image's size); otherwise why not, for the host owner."""
    if os.geteuid() != 0:
        return "disk quotas need the agent to run as root (loop devices)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"disk quotas need {', '.join(missing)} on this host"
    scratch_parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    attempt_dir = scratch_parent / f".quota-probe-{secrets.token_hex(4)}"
    try:
        for name in QUOTA_DIRS:
            (attempt_dir / name).mkdir(parents=True)
        mounts_create(attempt_dir, DiskSpec(work_mb=PROBE_MB, outputs_mb=PROBE_MB))
        total = os.statvfs(attempt_dir / "work")
        if not is_mounted(attempt_dir / "work") or total.f_blocks * total.f_frsize > PROBE_MB * MB:
            return "a loop-mounted image did not show up as its own file system"
        return ""
    except OSError as exc:
        return f"loop-mounted ext4 images do not work here: {exc}"
    finally:
        mounts_release(attempt_dir)
        shutil.rmtree(attempt_dir, ignore_errors=True)


def _run(command: list[str], step: str) -> None:
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise QuotaError(f"{step} failed: {exc}") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-500:]
        raise QuotaError(f"{step} failed (exit {result.returncode}): {detail}")


def _command(command: list[str]) -> int:
    """Run a release step; its failure is logged, never raised (release is best effort and
    repeated at every clean-up)."""
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("%s: %s", " ".join(command), exc)
        return -1
    if result.returncode != 0:
        log.warning("%s: %s", " ".join(command), result.stderr.strip()[-300:])
    return result.returncode
