"""The hostile suite: scripts that try to get out of, or take down, the sandbox."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from agent.runtime import JobSpec, JobSpecError, Outcome
from tests.agent.test_runtime_docker import Finished, run_to_end, runtime_for, spec_for

pytestmark = pytest.mark.docker


@pytest.fixture
def runtime(tmp_path):
    with runtime_for(tmp_path) as runtime:
        yield runtime


def _report(finished: Finished) -> dict[str, object]:
    """The JSON object the probing script printed last."""
    report: dict[str, object] = json.loads(finished.logs.strip().splitlines()[-1])
    return report


def _bridge_gateway() -> str:
    """The host's address on the Docker bridge (Docker gives the subnet's first address when
    the configuration names none)."""
    config = docker.from_env().networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(ipaddress.ip_network(config["Subnet"])[1])


NETWORK_PROBE = """\
import errno, json, socket
results = {}
for host in (%r, "127.0.0.1"):
    probe = socket.socket()
    probe.settimeout(3)
    try:
        probe.connect((host, 5432))
        results[host] = "connected"
    except OSError as exc:
        results[host] = errno.errorcode.get(exc.errno, repr(exc))
try:
    socket.getaddrinfo("pypi.org", 443)
    results["dns"] = "resolved"
except OSError:
    results["dns"] = "failed"
print(json.dumps(results))
"""


def test_the_run_step_has_no_network(runtime):
    # given: PostgreSQL of this machine, over the Docker bridge and over loopback
    gateway = _bridge_gateway()

    # when
    finished = run_to_end(runtime, spec_for(NETWORK_PROBE % gateway, network_allowed=True))

    # then: no route at all to the host; loopback is the sandbox's own, where nothing listens
    assert finished.outcome == Outcome("succeeded", "exit code 0", 0)
    assert _report(finished) == {
        gateway: "ENETUNREACH",
        "127.0.0.1": "ECONNREFUSED",
        "dns": "failed",
    }


def test_the_same_probe_reaches_the_bridge_when_the_host_allows_network(tmp_path):
    # given: the control for the test above: the probe can tell network from no network
    gateway = _bridge_gateway()

    with runtime_for(tmp_path, network_allowed=True) as runtime:
        # when
        finished = run_to_end(runtime, spec_for(NETWORK_PROBE % gateway, network_allowed=True))

    # then: PostgreSQL listens on 127.0.0.1 only, so the gateway answers with a refusal
    assert _report(finished)[gateway] in ("ECONNREFUSED", "connected")


def test_a_memory_hog_ends_as_out_of_memory(runtime):
    # given
    source = "blocks = []\nwhile True:\n    blocks.append(b'x' * (8 * 1024 * 1024))\n"

    # when
    finished = run_to_end(runtime, spec_for(source, memory_mb=64))

    # then
    assert finished.outcome == Outcome("failed", "out of memory (limit 64 MB)", 137)


def test_a_fork_bomb_is_stopped_by_the_pids_limit(tmp_path):
    # given: the script forks until the kernel refuses; init, the meter wrapper and the script
    # count too
    source = (
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "except OSError as exc:\n"
        "    print(f'refused after {children} children: errno {exc.errno}')\n"
    )

    with runtime_for(tmp_path, pids_limit=32) as runtime:
        # when
        finished = run_to_end(runtime, spec_for(source))

    # then
    assert finished.outcome == Outcome("succeeded", "exit code 0", 0)
    assert finished.logs == b"refused after 29 children: errno 11\n"


def test_a_real_fork_bomb_is_contained_and_the_host_survives(tmp_path):
    # given: every process forks forever and ignores failures
    source = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )

    with runtime_for(tmp_path, pids_limit=32) as runtime:
        # when
        finished = run_to_end(runtime, spec_for(source, cpus=0.5, timeout_seconds=3))

    # then
    assert finished.outcome == Outcome("timed_out", "timed out after 3 seconds", 137)
    assert finished.seconds < 15
    assert subprocess.run(["true"], check=False).returncode == 0


FILE_SYSTEM_PROBE = """\
import errno, json, os, subprocess
results = {}
def attempt(name, action):
    try:
        action()
        results[name] = "ok"
    except OSError as exc:
        results[name] = errno.errorcode.get(exc.errno, repr(exc))
attempt("root", lambda: open("/evil", "w"))
attempt("usr", lambda: open("/usr/bin/evil", "w"))
attempt("etc", lambda: open("/etc/passwd", "a"))
attempt("var_tmp", lambda: open("/var/tmp/evil", "w"))
attempt("env", lambda: open("/opt/env/evil", "w"))
attempt("work", lambda: open("/work/scratch", "w").write("ok"))
attempt("outputs", lambda: open("/outputs/out", "w").write("ok"))
attempt("meter", lambda: open("/meter/probe", "w").write("ok"))
attempt("tmp", lambda: open("/tmp/t.sh", "w").write("#!/bin/sh\\necho pwned\\n"))
os.chmod("/tmp/t.sh", 0o755)
attempt("tmp_exec", lambda: subprocess.run(["/tmp/t.sh"], check=True))
print(json.dumps(results))
"""


def test_only_work_outputs_meter_and_tmp_are_writable_and_tmp_is_noexec(runtime):
    # when
    spec = spec_for(FILE_SYSTEM_PROBE, requirements=("six==1.17.0",))
    finished = run_to_end(runtime, spec)

    # then
    assert finished.outcome == Outcome("succeeded", "exit code 0", 0)
    assert _report(finished) == {
        "root": "EROFS",
        "usr": "EROFS",
        "etc": "EACCES",
        "var_tmp": "EROFS",
        "env": "EROFS",
        "work": "ok",
        "outputs": "ok",
        "meter": "ok",
        "tmp": "ok",
        "tmp_exec": "EACCES",
    }


IDENTITY_PROBE = """\
import json, os
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines())
try:
    os.setuid(0)
    became_root = True
except PermissionError:
    became_root = False
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
    "cap_eff": status["CapEff"], "cap_bnd": status["CapBnd"],
    "no_new_privs": status["NoNewPrivs"], "seccomp": status["Seccomp"],
    "became_root": became_root,
}))
"""


def test_the_script_is_not_root_and_has_no_capabilities(runtime):
    finished = run_to_end(runtime, spec_for(IDENTITY_PROBE))

    assert _report(finished) == {
        "uid": 65534,
        "euid": 65534,
        "gid": 65534,
        "cap_eff": "0000000000000000",
        "cap_bnd": "0000000000000000",
        "no_new_privs": "1",
        "seccomp": "2",
        "became_root": False,
    }


def test_a_sleeper_is_killed_at_its_timeout(runtime):
    # given
    source = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"

    # when
    finished = run_to_end(runtime, spec_for(source, timeout_seconds=2))

    # then
    assert finished.outcome == Outcome("timed_out", "timed out after 2 seconds", 137)
    assert finished.logs == b"sleeping\n"
    assert 2 <= finished.seconds < 10


def _cancel_when_started(runtime, spec, grace):
    handle = runtime.start(runtime.prepare(spec))
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(runtime.wait, handle)
        logs = runtime.logs(handle)
        first = next(logs)
        started = time.monotonic()
        runtime.cancel(handle, grace, reason="cancelled by the renter")
        rest = b"".join(logs)
        return waiting.result(timeout=30), first + rest, time.monotonic() - started


def test_cancel_mid_run_sends_sigterm_first(runtime):
    # given
    source = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    print('cleaning up', flush=True)\n"
        "    sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('working', flush=True)\n"
        "time.sleep(600)\n"
    )

    # when
    outcome, logs, seconds = _cancel_when_started(runtime, spec_for(source), grace=10)

    # then
    assert outcome == Outcome("cancelled", "cancelled by the renter", 3)
    assert logs == b"working\ncleaning up\n"
    assert seconds < 5


def test_cancel_kills_a_script_that_ignores_sigterm_after_the_grace_period(runtime):
    # given
    source = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('stubborn', flush=True)\n"
        "time.sleep(600)\n"
    )

    # when
    outcome, logs, seconds = _cancel_when_started(runtime, spec_for(source), grace=1)

    # then
    assert outcome == Outcome("cancelled", "cancelled by the renter", 137)
    assert logs == b"stubborn\n"
    assert 1 <= seconds < 8


def test_path_traversal_in_file_names_never_reaches_the_disk(runtime):
    # when
    with pytest.raises(JobSpecError, match=r"has an empty, '\.' or '\.\.' component"):
        JobSpec(
            job_id=1,
            attempt=1,
            files={"main.py": b"", "../../etc/cron.d/evil": b"* * * * * root sh"},
            entrypoint="main.py",
        )

    # then
    assert not runtime.settings.work_root.exists()
    assert runtime.list_own() == []
