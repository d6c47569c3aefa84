"""Checks on everything a renter submits, before anything is written (pure; no database).

Files arrive as ``code`` (one file), ``files`` (several) or a zip archive. Sizes are capped per
file, in total and for code (``.py`` files); archives are read member by member with a bounded
read, so a zip bomb or a lying header stops at the cap. Paths must be relative and stay inside
the job's directory. Requirement lines must be plain package specifiers: no pip options, URLs,
paths or archives, because the install step has network access and runs pip with them.

Inputs and disk sizes are checked in ``jobs.inputs``; a code archive in the store is listed
from its central directory (``archive_paths_check``, called by ``jobs.code_archive``).
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from django.conf import settings
from packaging.requirements import InvalidRequirement, Requirement

from config.errors import TooLarge, ValidationFailed

if TYPE_CHECKING:
    from marketplace.disk import DiskRequest

DEFAULT_ENTRYPOINT = "main.py"
_MAX_PATH_LENGTH = 255
_MAX_PATH_DEPTH = 16
_MAX_REQUIREMENT_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".egg")


@dataclass(frozen=True)
class SubmittedFile:
    path: str
    content: bytes


@dataclass(frozen=True)
class JobSubmission:
    """A job as the API parsed it; ``job_submit`` validates the rest."""

    entrypoint: str | None
    requirements: list[str]
    cpus: Decimal
    memory_mb: int
    gpus: int
    timeout_seconds: int
    max_cost_micros: int
    host_id: int | None
    code: str | None = None
    files: tuple[SubmittedFile, ...] = ()
    archive: bytes | None = None
    name: str | None = None
    # The data plane: inputs as sent (checked by inputs_check), a held zip as the code, disk.
    inputs: tuple[object, ...] = ()
    archive_sha256: str | None = None
    disk: DiskRequest | None = None  # None: every size its default
    work_exec: bool = False
    # The private pool (an organisation id) the job runs in (docs/pools.md); None: public.
    pool_id: int | None = None


def refusals_merge(refusals: Sequence[ValidationFailed]) -> ValidationFailed:
    """Several refusals as one: a single one keeps its own code, several are ``invalid`` with
    each message and each field (docs/api.md, Errors)."""
    if len(refusals) == 1:
        return refusals[0]
    fields: dict[str, list[str]] = {}
    for refusal in refusals:
        for name, messages in refusal.fields.items():
            fields.setdefault(name, []).extend(messages)
    return ValidationFailed("; ".join(r.message for r in refusals), fields=fields)


def path_clean(path: str, *, field: str = "files") -> str:
    """A normalised relative POSIX path inside the job directory, or a 400 naming it."""

    def refuse(why: str) -> ValidationFailed:
        return ValidationFailed(
            f"file path {path!r} {why}", code="invalid_path", fields={field: [f"{path!r} {why}"]}
        )

    if not path or len(path) > _MAX_PATH_LENGTH:
        raise refuse(f"must be 1 to {_MAX_PATH_LENGTH} characters")
    if _CONTROL.search(path) or "\\" in path:
        raise refuse("contains control characters or backslashes")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise refuse("must be relative")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise refuse("must not contain '..'")
    if not parts or len(parts) > _MAX_PATH_DEPTH:
        raise refuse(f"must name a file at most {_MAX_PATH_DEPTH} folders deep")
    return str(PurePosixPath(*parts))


def files_from_archive(data: bytes) -> list[SubmittedFile]:
    """The files of an uploaded zip, refusing bombs, links, encryption and escaping paths."""
    if len(data) > settings.JOB_ARCHIVE_MAX_BYTES:
        raise TooLarge(
            f"the archive is larger than {settings.JOB_ARCHIVE_MAX_BYTES} bytes",
            code="archive_too_large",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return _archive_members(archive)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError) as exc:
        raise ValidationFailed(f"the archive can't be read: {exc}", code="bad_archive") from None


def _archive_members(archive: zipfile.ZipFile) -> list[SubmittedFile]:
    members = archive.infolist()
    if len(members) > 2 * settings.JOB_FILES_MAX_COUNT:
        raise ValidationFailed(
            f"the archive has more than {2 * settings.JOB_FILES_MAX_COUNT} entries",
            code="too_many_files",
        )
    files: list[SubmittedFile] = []
    total = 0
    for member in members:
        path = path_clean(member.filename, field="archive")
        if member.is_dir():
            continue
        if member.flag_bits & 0x1:
            raise ValidationFailed("encrypted archives are not supported", code="bad_archive")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ValidationFailed(f"{path} is a symbolic link", code="bad_archive")
        _size_check(path, member.file_size, total + member.file_size)
        with archive.open(member) as stream:
            # Headers can lie: read one byte past the cap rather than trusting file_size.
            content = stream.read(settings.JOB_FILE_MAX_BYTES + 1)
        total += len(content)
        _size_check(path, len(content), total)
        files.append(SubmittedFile(path, content))
    return files


def _size_check(path: str, size: int, total: int) -> None:
    # A .py file meets the tighter code cap first: name that one, not the per-file cap.
    if path.endswith(".py") and size > settings.JOB_CODE_MAX_BYTES:
        raise TooLarge(
            f"{path} is larger than the code limit of {settings.JOB_CODE_MAX_BYTES} bytes",
            code="code_too_large",
        )
    if size > settings.JOB_FILE_MAX_BYTES:
        raise TooLarge(
            f"{path} is larger than {settings.JOB_FILE_MAX_BYTES} bytes", code="file_too_large"
        )
    if total > settings.JOB_FILES_MAX_BYTES:
        raise TooLarge(
            f"the files add up to more than {settings.JOB_FILES_MAX_BYTES} bytes",
            code="files_too_large",
        )


def files_check(files: list[SubmittedFile]) -> list[SubmittedFile]:
    """Clean paths, refuse duplicates, and cap the count and the sizes."""
    if not files:
        raise ValidationFailed(
            "the job has no files", code="no_files", fields={"files": ["the job has no files"]}
        )
    if len(files) > settings.JOB_FILES_MAX_COUNT:
        raise ValidationFailed(
            f"a job has at most {settings.JOB_FILES_MAX_COUNT} files", code="too_many_files"
        )
    cleaned: list[SubmittedFile] = []
    seen: set[str] = set()
    total = code = 0
    for item in files:
        path = path_clean(item.path)
        if path in seen:
            raise ValidationFailed(f"{path} is given twice", code="duplicate_path")
        seen.add(path)
        total += len(item.content)
        _size_check(path, len(item.content), total)
        if path.endswith(".py"):
            code += len(item.content)
        cleaned.append(SubmittedFile(path, item.content))
    if code > settings.JOB_CODE_MAX_BYTES:
        raise TooLarge(
            f"the code (.py files) adds up to more than {settings.JOB_CODE_MAX_BYTES} bytes",
            code="code_too_large",
        )
    return cleaned


def submission_files(
    submission: JobSubmission, archive_paths: list[str] | None = None
) -> tuple[list[SubmittedFile], str]:
    """The job's files and its entrypoint, from whichever form the renter used.

    For a code archive in the store (``archive_sha256``) the job has no inline files and the
    entrypoint must be among ``archive_paths`` (the zip's members, read by the submit); with
    None there (the archive itself was refused) the entrypoint is not checked again.
    """
    forms = (submission.code, submission.archive, submission.archive_sha256)
    given = [s is not None for s in forms] + [bool(submission.files)]
    if sum(given) != 1:
        raise ValidationFailed(
            "give exactly one of code, files, archive or archive_sha256", code="code_required"
        )
    if submission.archive_sha256 is not None:
        if archive_paths is None:
            return [], submission.entrypoint or ""
        members = [SubmittedFile(path, b"") for path in archive_paths]
        return [], entrypoint_check(submission.entrypoint, members)
    if submission.code is not None:
        raw = [SubmittedFile(submission.entrypoint or DEFAULT_ENTRYPOINT, submission.code.encode())]
    elif submission.archive is not None:
        raw = files_from_archive(submission.archive)
    else:
        raw = list(submission.files)
    files = files_check(raw)
    entrypoint = entrypoint_check(submission.entrypoint, files)
    return files, entrypoint


def entrypoint_check(entrypoint: str | None, files: list[SubmittedFile]) -> str:
    if entrypoint is None:
        if len(files) == 1:
            entrypoint = files[0].path
        else:
            raise ValidationFailed(
                "name the entrypoint among several files",
                code="entrypoint_required",
                fields={"entrypoint": ["name the file to run among several files"]},
            )
    cleaned = path_clean(entrypoint, field="entrypoint")
    if not cleaned.endswith(".py"):
        raise ValidationFailed(
            f"the entrypoint {entrypoint!r} must be a .py file",
            code="invalid_entrypoint",
            fields={"entrypoint": [f"{entrypoint!r} must be a .py file"]},
        )
    if cleaned not in {f.path for f in files}:
        raise ValidationFailed(
            f"the entrypoint {entrypoint!r} is not among the files",
            code="invalid_entrypoint",
            fields={"entrypoint": [f"{entrypoint!r} is not among the files"]},
        )
    return cleaned


def requirement_problem(line: str) -> str | None:
    """Why ``line`` is not a plain package specifier, or None when it is one."""
    if len(line) > _MAX_REQUIREMENT_LENGTH:
        return f"is longer than {_MAX_REQUIREMENT_LENGTH} characters"
    if _CONTROL.search(line):
        return "contains control characters"
    if line.startswith("-"):
        return "pip options (such as --index-url or -e) are not allowed"
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return "is not a package specifier such as 'requests>=2.31'"
    if requirement.url is not None:
        return "URLs are not allowed: name a package from the index"
    if requirement.name.lower().endswith(_ARCHIVE_SUFFIXES):
        return "files and archives are not allowed: name a package from the index"
    return None


def requirements_check(lines: list[str]) -> list[str]:
    """Plain package specifiers, blank lines and comments dropped; a 400 names a bad line."""
    cleaned: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        problem = requirement_problem(line)
        if problem is not None:
            raise ValidationFailed(
                f"requirement line {number} ({line!r}) {problem}",
                code="invalid_requirement",
                fields={"requirements": [f"line {number}: {line!r} {problem}"]},
            )
        cleaned.append(str(Requirement(line)))
    if len(cleaned) > settings.JOB_REQUIREMENTS_MAX_COUNT:
        raise ValidationFailed(
            f"a job has at most {settings.JOB_REQUIREMENTS_MAX_COUNT} requirements",
            code="too_many_requirements",
        )
    return cleaned


def archive_paths_check(archive: zipfile.ZipFile, *, work_mb: int) -> list[str]:
    """The file paths of a code archive from its central directory alone (never unpacked).

    ``files_from_archive``'s rules on paths, links and encryption; the uncompressed total the
    entries state must fit ``/work`` (the agent unpacks it there with that file system's cap,
    so an entry that lies about its size stops at ENOSPC on the host, not here).
    """
    paths: list[str] = []
    total = 0
    for member in archive.infolist():
        path = path_clean(member.filename, field="archive_sha256")
        if member.is_dir():
            continue
        if member.flag_bits & 0x1:
            raise ValidationFailed(
                "encrypted archives are not supported",
                code="bad_archive",
                fields={"archive_sha256": ["the archive is encrypted"]},
            )
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ValidationFailed(
                f"{path} is a symbolic link",
                code="bad_archive",
                fields={"archive_sha256": [f"{path} is a symbolic link"]},
            )
        total += member.file_size
        paths.append(path)
    if total > work_mb * 1024 * 1024:
        raise TooLarge(
            f"the archive unpacks to {total} bytes, more than /work's {work_mb} MB",
            code="archive_too_large",
            fields={"archive_sha256": [f"unpacks to more than {work_mb} MB (disk.work_mb)"]},
        )
    return paths
