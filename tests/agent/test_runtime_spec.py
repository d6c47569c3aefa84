"""JobSpec and RuntimeSettings refuse what the sandbox must never see (no Docker needed)."""

from pathlib import Path
from typing import Any

import pytest

from agent.runtime import JobSpec, JobSpecError, RuntimeSettings


def _spec(**overrides):
    fields: dict[str, Any] = {
        "job_id": 7,
        "attempt": 1,
        "files": {"main.py": b"print(1)\n"},
        "entrypoint": "main.py",
    }
    fields.update(overrides)
    return JobSpec(**fields)


def test_a_valid_spec_keeps_its_fields_and_makes_requirements_a_tuple():
    # given / when
    spec = _spec(
        files={"main.py": b"x", "pkg/util.py": b"y"},
        requirements=["six==1.17.0", "tomli>=2,<3", "requests[socks]"],
    )

    # then
    assert spec.requirements == ("six==1.17.0", "tomli>=2,<3", "requests[socks]")
    assert spec.files == {"main.py": b"x", "pkg/util.py": b"y"}
    assert (spec.cpus, spec.memory_mb, spec.gpus, spec.network_allowed) == (1.0, 512, 0, False)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.py", "has an empty, '.' or '..' component"),
        ("pkg/../../evil.py", "has an empty, '.' or '..' component"),
        ("./main.py", "has an empty, '.' or '..' component"),
        ("pkg//main.py", "has an empty, '.' or '..' component"),
        ("pkg/", "has an empty, '.' or '..' component"),
        ("/etc/passwd", "is absolute"),
        ("pkg\\..\\evil.py", "contains a NUL or a backslash"),
        ("evil\x00.py", "contains a NUL or a backslash"),
        ("", "must have 1 to 255 characters"),
        ("a" * 256, "must have 1 to 255 characters"),
    ],
)
def test_file_names_that_could_escape_the_work_dir_are_refused(name, message, tmp_path):
    # given
    files = {"main.py": b"print(1)\n", name: b"boom"}

    # when
    with pytest.raises(JobSpecError) as refused:
        _spec(files=files)

    # then
    assert message in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_a_name_that_is_both_a_file_and_a_directory_is_refused():
    with pytest.raises(JobSpecError, match="'pkg' is both a file and a directory"):
        _spec(files={"main.py": b"", "pkg": b"", "pkg/mod.py": b""})


def test_the_entrypoint_must_be_one_of_the_files():
    with pytest.raises(JobSpecError, match=r"the entrypoint 'run\.py' is not one of the files"):
        _spec(entrypoint="run.py")


def test_a_job_without_files_is_refused():
    with pytest.raises(JobSpecError, match="a job needs at least one file"):
        _spec(files={}, entrypoint="main.py")


@pytest.mark.parametrize(
    "line",
    [
        "--index-url=https://evil.example/simple",
        "-e git+https://evil.example/x.git",
        "six @ https://evil.example/six.whl",
        "https://evil.example/six.whl",
        "./local/path",
        "six; os_name == 'posix'",
        "six==1.0 --hash=sha256:00",
        "",
    ],
)
def test_requirements_other_than_plain_specifiers_are_refused(line):
    with pytest.raises(JobSpecError) as refused:
        _spec(requirements=["six", line])

    assert str(refused.value) == f"requirement {line!r} is not a plain package specifier"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cpus": 0}, "cpus must be within (0, 1024], not 0"),
        ({"memory_mb": 8}, "memory_mb must be at least 16, not 8"),
        ({"gpus": -1}, "gpus must be within 0..64, not -1"),
        ({"timeout_seconds": 0}, "timeout_seconds must be positive, not 0"),
        ({"attempt": 0}, "job_id and attempt must be positive"),
    ],
)
def test_limits_out_of_range_are_refused(overrides, message):
    with pytest.raises(JobSpecError) as refused:
        _spec(**overrides)

    assert str(refused.value) == message


def test_settings_refuse_a_root_sandbox_user():
    with pytest.raises(ValueError, match="run_user must be a numeric non-root uid:gid"):
        RuntimeSettings(work_root=Path("/tmp/x"), run_user="0:0")


def test_settings_refuse_log_chunks_larger_than_the_protocol_allows():
    with pytest.raises(ValueError, match=r"log_chunk_bytes must be within 1\.\.65536"):
        RuntimeSettings(work_root=Path("/tmp/x"), log_chunk_bytes=65537)
