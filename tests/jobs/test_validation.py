"""Edge validation of submitted code, archives and requirements (pure; no database)."""

from __future__ import annotations

import io
import stat
import zipfile
from decimal import Decimal
from typing import Any

import pytest

from config.errors import TooLarge, ValidationFailed
from jobs.validation import (
    JobSubmission,
    SubmittedFile,
    files_from_archive,
    path_clean,
    requirement_problem,
    requirements_check,
    submission_files,
)


def zipped(members: dict[str, bytes], *, link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def submission(**overrides):
    values: dict[str, Any] = {
        "entrypoint": None,
        "requirements": [],
        "cpus": Decimal(1),
        "memory_mb": 256,
        "gpus": 0,
        "timeout_seconds": 60,
        "max_cost_micros": 1_000_000,
        "host_id": None,
    }
    values.update(overrides)
    return JobSubmission(**values)


@pytest.mark.parametrize(
    ("path", "clean"),
    [("main.py", "main.py"), ("./src//app.py", "src/app.py"), ("a/b/c.txt", "a/b/c.txt")],
)
def test_paths_are_normalised(path, clean):
    assert path_clean(path) == clean


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x.py", "a/../../x", "C:/x.py", "a\\b.py", "a\x00.py", "."]
)
def test_escaping_or_odd_paths_are_refused(path):
    with pytest.raises(ValidationFailed) as excinfo:
        path_clean(path)
    assert excinfo.value.code == "invalid_path"


def test_one_code_string_becomes_main_py():
    # when
    files, entrypoint = submission_files(submission(code="print(1)"))

    # then
    assert files == [SubmittedFile("main.py", b"print(1)")]
    assert entrypoint == "main.py"


def test_several_files_need_an_entrypoint_that_exists_and_is_python():
    files = (SubmittedFile("a.py", b""), SubmittedFile("data.csv", b"1"))
    with pytest.raises(ValidationFailed) as missing:
        submission_files(submission(files=files))
    with pytest.raises(ValidationFailed) as absent:
        submission_files(submission(files=files, entrypoint="b.py"))
    with pytest.raises(ValidationFailed) as not_python:
        submission_files(submission(files=files, entrypoint="data.csv"))
    assert missing.value.code == "entrypoint_required"
    assert absent.value.code == "invalid_entrypoint"
    assert not_python.value.code == "invalid_entrypoint"


def test_exactly_one_form_of_code_is_accepted():
    with pytest.raises(ValidationFailed) as excinfo:
        submission_files(submission(code="x", archive=zipped({"main.py": b""})))
    assert excinfo.value.code == "code_required"


def test_duplicate_paths_are_refused():
    files = (SubmittedFile("a.py", b""), SubmittedFile("./a.py", b""))
    with pytest.raises(ValidationFailed) as excinfo:
        submission_files(submission(files=files, entrypoint="a.py"))
    assert excinfo.value.code == "duplicate_path"


def test_size_caps_per_file_total_and_code(settings):
    # given
    settings.JOB_FILE_MAX_BYTES = 10
    settings.JOB_FILES_MAX_BYTES = 15
    settings.JOB_CODE_MAX_BYTES = 8

    # when / then
    with pytest.raises(TooLarge) as one:
        submission_files(submission(files=(SubmittedFile("a.txt", b"x" * 11),), entrypoint="a.txt"))
    with pytest.raises(TooLarge) as total:
        submission_files(
            submission(
                files=(SubmittedFile("a.txt", b"x" * 10), SubmittedFile("b.py", b"x" * 6)),
                entrypoint="b.py",
            )
        )
    with pytest.raises(TooLarge) as code:
        submission_files(submission(code="x" * 9))
    assert (one.value.code, total.value.code, code.value.code) == (
        "file_too_large",
        "files_too_large",
        "code_too_large",
    )


def test_a_zip_is_unpacked_with_its_entrypoint():
    # given
    archive = zipped({"pkg/": b"", "pkg/run.py": b"print(2)", "data.txt": b"x"})

    # when
    files, entrypoint = submission_files(submission(archive=archive, entrypoint="pkg/run.py"))

    # then
    assert files == [SubmittedFile("pkg/run.py", b"print(2)"), SubmittedFile("data.txt", b"x")]
    assert entrypoint == "pkg/run.py"


def test_a_zip_bomb_stops_at_the_cap(settings):
    # given: 10 MB of zeros compresses to a few KB
    settings.JOB_FILE_MAX_BYTES = 1024 * 1024
    bomb = zipped({"zeros.txt": b"\0" * 10_000_000})
    assert len(bomb) < 20_000

    # when / then
    with pytest.raises(TooLarge) as excinfo:
        files_from_archive(bomb)
    assert excinfo.value.code == "file_too_large"


def test_a_zip_with_too_many_members_is_refused(settings):
    settings.JOB_FILES_MAX_COUNT = 2
    with pytest.raises(ValidationFailed) as excinfo:
        files_from_archive(zipped({f"f{i}.txt": b"" for i in range(5)}))
    assert excinfo.value.code == "too_many_files"


@pytest.mark.parametrize("name", ["../evil.py", "/abs.py", "a/../../evil.py"])
def test_zip_slip_paths_are_refused(name):
    with pytest.raises(ValidationFailed) as excinfo:
        files_from_archive(zipped({"main.py": b"", name: b"x"}))
    assert excinfo.value.code == "invalid_path"


def test_symlinks_and_garbage_archives_are_refused():
    with pytest.raises(ValidationFailed) as link:
        files_from_archive(zipped({"main.py": b""}, link="passwd"))
    with pytest.raises(ValidationFailed) as garbage:
        files_from_archive(b"PK\x03\x04 not really a zip")
    assert (link.value.code, garbage.value.code) == ("bad_archive", "bad_archive")


@pytest.mark.parametrize(
    "line",
    [
        "requests",
        "requests>=2.31,<3",
        "numpy==2.1.0",
        "rich[jupyter]~=13.0",
        "tomli; python_version < '3.11'",
    ],
)
def test_plain_specifiers_are_accepted(line):
    assert requirement_problem(line) is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("--index-url https://evil.example/simple", "pip options"),
        ("-e git+https://x/y.git", "pip options"),
        ("-r other.txt", "pip options"),
        ("pkg @ https://evil.example/pkg.whl", "URLs are not allowed"),
        ("https://evil.example/pkg.tar.gz", "is not a package specifier"),
        ("./local/path", "is not a package specifier"),
        ("/abs/path", "is not a package specifier"),
        ("evil.whl", "files and archives are not allowed"),
        ("requests --hash=sha256:abc", "is not a package specifier"),
    ],
)
def test_anything_but_a_plain_specifier_is_refused(line, problem):
    assert problem in (requirement_problem(line) or "")


def test_a_refused_requirement_names_its_line():
    # when
    with pytest.raises(ValidationFailed) as excinfo:
        requirements_check(["requests", "# a comment", "", "--extra-index-url http://x"])

    # then
    assert excinfo.value.code == "invalid_requirement"
    assert excinfo.value.message.startswith(
        "requirement line 4 ('--extra-index-url http://x') pip options"
    )


def test_requirements_are_normalised_and_comments_dropped():
    assert requirements_check(["  Requests >= 2 ", "# c", ""]) == ["Requests>=2"]
