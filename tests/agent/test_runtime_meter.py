"""The run container's CPU meter (agent/runtime/meter.py), without Docker.

The wrapper runs here as it runs in the container (``python3 -c WRAPPER <file> <command>``);
the reader is fed every shape of file a renter could leave in the meter directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.runtime.meter import (
    METER_FILE,
    METER_MAX_BYTES,
    WRAPPER,
    meter_clip,
    meter_read,
    wrapped,
)

BURN = (
    "import time\n"
    "end = time.process_time() + {seconds}\n"
    "while time.process_time() < end:\n"
    "    pass\n"
)


def wrapper(meter_dir: Path, *command: str, **kwargs) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WRAPPER, str(meter_dir / METER_FILE), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kwargs,
    )


# --- the wrapper -------------------------------------------------------------------------------


def test_the_command_is_the_script_under_the_wrapper():
    assert wrapped(["python3", "main.py"]) == [
        "python3",
        "-c",
        WRAPPER,
        "/meter/usage.json",
        "python3",
        "main.py",
    ]


def test_the_wrapper_writes_the_cpu_time_of_the_whole_tree_at_the_exit(tmp_path):
    # given: a script that burns 0.4 s itself and starts a child that burns 0.4 s more and is
    # left behind as an orphan
    script = tmp_path / "main.py"
    script.write_text(
        "import os, subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {BURN.format(seconds=0.4)!r}])\n"
        + BURN.format(seconds=0.4)
        + "time.sleep(0.6)\n"
        "print('done', flush=True)\n"
    )

    # when
    process = wrapper(tmp_path, sys.executable, str(script))
    output, _ = process.communicate(timeout=30)

    # then: the script's output is its own, its exit code the wrapper's, and the file holds
    # the CPU time of both processes (the orphan was reaped by the wrapper as subreaper)
    assert (process.returncode, output) == (0, b"done\n")
    seconds = meter_read(tmp_path)
    assert seconds is not None
    assert 0.8 <= seconds < 1.6, seconds
    assert json.loads((tmp_path / METER_FILE).read_text()) == {"cpu_seconds": seconds}
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("raise SystemExit(3)", 3),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", 128 + signal.SIGSEGV),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", 128 + signal.SIGKILL),
    ],
)
def test_the_wrapper_exits_as_the_script_did(tmp_path, source, code):
    script = tmp_path / "main.py"
    script.write_text(source)

    process = wrapper(tmp_path, sys.executable, str(script))
    process.communicate(timeout=30)

    # an init process reports a death by signal N as 128 + N: so does the wrapper
    assert process.returncode == code
    assert meter_read(tmp_path) is not None


def test_signals_sent_to_the_wrapper_reach_the_script(tmp_path):
    # given: a script that ends cleanly on SIGTERM, and says so
    script = tmp_path / "main.py"
    script.write_text(
        "import signal, sys, time\n"
        "def stop(number, frame):\n"
        "    print(f'got {signal.Signals(number).name}', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    process = wrapper(tmp_path, sys.executable, str(script))
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"

    # when: SIGTERM to the wrapper (the init process passes it to its child, the wrapper)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    rest = process.stdout.read()
    process.wait(timeout=10)

    # then: the script got it, ended, and the wrapper wrote the meter and exited as it did
    assert (rest, process.returncode) == (b"got SIGTERM\n", 0)
    assert time.monotonic() - started < 5
    assert meter_read(tmp_path) is not None


def test_the_script_starts_with_default_signal_dispositions(tmp_path):
    # Python ignores SIGPIPE for itself; a shell pipeline under the wrapper must not inherit it
    process = wrapper(tmp_path, "sh", "-c", "grep -E 'SigIgn|SigBlk' /proc/self/status")
    output, _ = process.communicate(timeout=30)

    lines = dict(line.split(":\t") for line in output.decode().splitlines())
    assert int(lines["SigBlk"], 16) == 0
    assert int(lines["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1)) == 0


def test_a_command_that_cannot_run_exits_127(tmp_path):
    process = wrapper(tmp_path, str(tmp_path / "missing"))
    output, _ = process.communicate(timeout=30)

    assert process.returncode == 127
    assert b"cannot run" in output


def test_a_meter_file_the_renter_made_a_directory_leaves_no_reading(tmp_path):
    # the renter owns the directory as much as the wrapper: it can keep the file from being
    # written (the samples stand), never make it say more than the clip
    (tmp_path / METER_FILE).mkdir()
    script = tmp_path / "main.py"
    script.write_text("pass")

    process = wrapper(tmp_path, sys.executable, str(script))
    process.communicate(timeout=30)

    assert process.returncode == 0
    assert meter_read(tmp_path) is None


# --- the reader ----------------------------------------------------------------------------------


def test_a_file_of_the_expected_shape_is_read(tmp_path):
    (tmp_path / METER_FILE).write_text('{"cpu_seconds": 2.5}')
    assert meter_read(tmp_path) == 2.5
    (tmp_path / METER_FILE).write_text('{"cpu_seconds": 7}')
    assert meter_read(tmp_path) == 7.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[2.5]",
        "2.5",
        '{"cpu_seconds": "2.5"}',
        '{"cpu_seconds": true}',
        '{"cpu_seconds": null}',
        '{"cpu_seconds": NaN}',
        '{"cpu_seconds": Infinity}',
        '{"cpu_seconds": -1}',
        '{"cpu_seconds": 1e10}',
        '{"cpu_seconds": 1e400}',
        '{"cpu_seconds": 2.5, "wall_seconds": 3}',
        '{"cpu": 2.5}',
        b"\xff\xfe".decode("latin-1"),
    ],
)
def test_anything_else_is_no_reading(tmp_path, text):
    (tmp_path / METER_FILE).write_text(text, encoding="latin-1")
    assert meter_read(tmp_path) is None


def test_a_file_over_4_kib_is_not_read(tmp_path):
    padded = '{"cpu_seconds": 2.5}' + " " * METER_MAX_BYTES
    (tmp_path / METER_FILE).write_text(padded)
    assert json.loads(padded) == {"cpu_seconds": 2.5}
    assert meter_read(tmp_path) is None


def test_a_link_is_never_followed(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text('{"cpu_seconds": 2.5}')
    meter_dir = tmp_path / "meter"
    meter_dir.mkdir()
    (meter_dir / METER_FILE).symlink_to(target)
    linked_dir = tmp_path / "linked"
    linked_dir.symlink_to(meter_dir)

    assert meter_read(meter_dir) is None
    assert meter_read(linked_dir) is None


def test_a_fifo_or_a_directory_is_not_read_and_nothing_blocks(tmp_path):
    os.mkfifo(tmp_path / METER_FILE)
    started = time.monotonic()
    assert meter_read(tmp_path) is None
    assert time.monotonic() - started < 1
    (tmp_path / METER_FILE).unlink()
    (tmp_path / METER_FILE).mkdir()
    assert meter_read(tmp_path) is None


def test_no_file_or_no_directory_is_no_reading(tmp_path):
    assert meter_read(tmp_path) is None
    assert meter_read(tmp_path / "missing") is None


def test_the_clip_is_the_cores_times_the_run_time():
    assert meter_clip(1e8, 0.5, 4.0) == 2.0
    assert meter_clip(1.25, 2.0, 4.0) == 1.25
    assert meter_clip(3.0, 2.0, -1.0) == 0.0
    assert meter_clip(3.0, 0.0, 4.0) == 0.0
