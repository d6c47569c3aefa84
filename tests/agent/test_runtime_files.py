"""The attempt directory and the outputs that come back from it (no Docker needed)."""

import hashlib
import os
from pathlib import Path

from agent.runtime.docker_runtime import rechunk
from agent.runtime.files import attempt_dir_create, output_name, outputs_collect
from agent.runtime.reasons import attempt_outcome, exit_reason, log_tail
from agent.runtime.types import Handle, Outcome


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def test_the_attempt_directory_holds_the_files_and_an_empty_outputs_dir(tmp_path):
    # given
    files = {"main.py": b"print(1)\n", "pkg/util.py": b"X = 1\n"}
    owner = f"{os.geteuid()}:{os.getegid()}"

    # when
    root = attempt_dir_create(tmp_path / "jobs", 5, 1, files, owner)

    # then
    assert root == tmp_path / "jobs" / "job-5-1"
    assert (root / "work" / "main.py").read_bytes() == b"print(1)\n"
    assert (root / "work" / "pkg" / "util.py").read_bytes() == b"X = 1\n"
    assert list((root / "outputs").iterdir()) == []
    assert (tmp_path / "jobs").stat().st_mode & 0o777 == 0o700


def test_an_existing_work_root_open_to_others_is_closed_to_them(tmp_path):
    # given: a work directory someone created by hand, readable and enterable by all
    work_root = tmp_path / "jobs"
    work_root.mkdir(mode=0o755)
    work_root.chmod(0o755)

    # when
    attempt_dir_create(work_root, 5, 1, {"main.py": b"print(1)\n"}, "65534:65534")

    # then: an unprivileged agent opens work/ and outputs/ to everyone; only this keeps other
    # users of the host out of them
    assert work_root.stat().st_mode & 0o777 == 0o700


def test_a_leftover_attempt_directory_is_replaced(tmp_path):
    # given
    owner = f"{os.geteuid()}:{os.getegid()}"
    first = attempt_dir_create(tmp_path, 5, 1, {"main.py": b"old"}, owner)
    (first / "outputs" / "stale.txt").write_text("stale")

    # when
    again = attempt_dir_create(tmp_path, 5, 1, {"main.py": b"new"}, owner)

    # then
    assert (again / "work" / "main.py").read_bytes() == b"new"
    assert list((again / "outputs").iterdir()) == []


def test_outputs_skip_links_and_special_files_and_sanitise_names(tmp_path):
    # given
    outputs = tmp_path / "outputs"
    (outputs / "sub" / "deeper").mkdir(parents=True)
    (outputs / "result.txt").write_bytes(b"42\n")
    (outputs / "sub" / "deeper" / "data.bin").write_bytes(b"\x00\x01")
    (outputs / "we ird name!.txt").write_bytes(b"w")
    (outputs / ".hidden").write_bytes(b"h")
    (outputs / "passwd").symlink_to("/etc/passwd")
    (outputs / "etc").symlink_to("/etc", target_is_directory=True)
    os.mkfifo(outputs / "pipe")

    # when
    collected = outputs_collect(outputs, max_bytes=1024, max_files=100)

    # then
    assert [(f.name, f.size, f.sha256, f.path) for f in collected] == [
        ("_hidden", 1, _sha(b"h"), outputs / ".hidden"),
        ("result.txt", 3, _sha(b"42\n"), outputs / "result.txt"),
        ("sub/deeper/data.bin", 2, _sha(b"\x00\x01"), outputs / "sub" / "deeper" / "data.bin"),
        ("we_ird_name_.txt", 1, _sha(b"w"), outputs / "we ird name!.txt"),
    ]


def test_outputs_past_the_size_cap_are_skipped_but_later_small_ones_kept(tmp_path):
    # given
    (tmp_path / "a.bin").write_bytes(b"a" * 60)
    (tmp_path / "b.bin").write_bytes(b"b" * 60)
    (tmp_path / "c.bin").write_bytes(b"c" * 30)

    # when
    collected = outputs_collect(tmp_path, max_bytes=100, max_files=100)

    # then
    assert [(f.name, f.size) for f in collected] == [("a.bin", 60), ("c.bin", 30)]


def test_outputs_stop_at_the_file_count_cap(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(b"x")

    assert [f.name for f in outputs_collect(tmp_path, 100, max_files=2)] == ["a", "b"]


def test_output_names_that_collide_after_sanitising_get_a_suffix(tmp_path):
    (tmp_path / "a b").write_bytes(b"1")
    (tmp_path / "a_b").write_bytes(b"2")

    assert [f.name for f in outputs_collect(tmp_path, 100, 100)] == ["a_b", "a_b-2"]


def test_output_name_keeps_only_portable_characters():
    assert output_name(["..", "ü.txt"]) == "_./_.txt"
    assert output_name(["x" * 150]) == "x" * 100


def test_rechunk_keeps_order_and_caps_the_chunk_size():
    chunks = list(rechunk(iter([b"a" * 40, b"b" * 5]), 16))

    assert [len(c) for c in chunks] == [16, 16, 8, 5]
    assert b"".join(chunks) == b"a" * 40 + b"b" * 5


def test_reasons_name_the_signal_and_keep_the_last_lines():
    assert exit_reason(1) == "exit code 1"
    assert exit_reason(137) == "exit code 137 (killed by SIGKILL)"
    assert exit_reason(-15) == "exit code -15 (killed by SIGTERM)"
    assert log_tail(b"one\n\ntwo\r\nthree\nfour\n") == "two\nthree\nfour"
    assert log_tail(b"") == "no output"


def test_an_attempts_outcome_puts_the_agents_own_stop_first_then_timeout_memory_exit():
    def handle(**stop):
        return Handle(1, 1, "ref", Path("/x"), 60, 64, 0.0, **stop)

    cancelled = handle(stop_status="cancelled", stop_reason="cancelled by the owner")

    assert attempt_outcome(cancelled, 137, timed_out=True, oom=True) == Outcome(
        "cancelled", "cancelled by the owner", 137
    )
    assert attempt_outcome(handle(), 137, timed_out=True, oom=True) == Outcome(
        "timed_out", "timed out after 60 seconds", 137
    )
    assert attempt_outcome(handle(), 137, oom=True) == Outcome(
        "failed", "out of memory (limit 64 MB)", 137
    )
    assert attempt_outcome(handle(), 0) == Outcome("succeeded", "exit code 0", 0)
    assert attempt_outcome(handle(), 3) == Outcome("failed", "exit code 3", 3)
