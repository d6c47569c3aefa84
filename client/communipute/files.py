"""Local files named for a job: which file goes where (``/inputs/<path>`` for inputs, the job's
folder for code), and a folder packed as a zip for a code archive.

A path given alone lands under its own name: ``data/train.csv`` as ``train.csv``, a folder
``data/`` as ``data/...`` with everything below it. ``(local, remote)`` chooses the place.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# What ``files=`` and ``inputs=`` take: a path, or (local path, path in the job).
LocalPath = str | os.PathLike[str]
FileSpec = LocalPath | tuple[LocalPath, str]

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same folder packs to the same bytes
_SKIPPED_FOLDERS = frozenset({"__pycache__"})


@dataclass(frozen=True)
class LocalFile:
    local: Path
    remote: str  # a relative POSIX path
    size: int


def remote_check(remote: str) -> str:
    """A clean relative POSIX path (the server checks again and names the item)."""
    pure = PurePosixPath(remote.replace("\\", "/"))
    if not remote or pure.is_absolute() or ".." in pure.parts or str(pure) in ("", "."):
        raise ValueError(f"{remote!r} is not a relative path inside the job")
    return str(pure)


def _walk(folder: Path) -> Iterator[Path]:
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if name not in _SKIPPED_FOLDERS)
        for name in sorted(names):
            yield Path(root) / name


def local_files(specs: Iterable[FileSpec]) -> list[LocalFile]:
    """Every file the specs name, each with its place in the job; a missing path is
    ``FileNotFoundError``, a bad place ``ValueError``."""
    found: list[LocalFile] = []
    for spec in specs:
        if isinstance(spec, tuple):
            local, remote = Path(spec[0]), remote_check(str(spec[1]))
        else:
            local = Path(spec)
            remote = remote_check(local.resolve().name)
        if local.is_dir():
            for path in _walk(local):
                rel = path.relative_to(local).as_posix()
                found.append(LocalFile(path, f"{remote}/{rel}", path.stat().st_size))
        elif local.is_file():
            found.append(LocalFile(local, remote, local.stat().st_size))
        else:
            raise FileNotFoundError(f"no such file or folder: {local}")
    return found


def folder_zip(folder: Path, into: Path) -> None:
    """Pack ``folder`` as a zip at ``into``: sorted, with fixed times and modes, so the same
    files give the same bytes (and so the same sha256: uploaded once)."""
    with zipfile.ZipFile(into, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _walk(folder):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with path.open("rb") as source, archive.open(info, "w") as target:
                while block := source.read(1024 * 1024):
                    target.write(block)
