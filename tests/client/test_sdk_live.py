"""The SDK and its command line against the real thing: a real daphne (``tests.live``), the
real agent running the jobs in Docker containers, what beat runs in a thread (``Beat``).

- ``Client.run`` of a script with a local input file: uploaded by tus (and not again), run,
  its log live, ``wait``, its outputs listed and downloaded (checked by sha256), its receipt
  equal to what left the wallet;
- the ``communipute`` command as a subprocess: ``login`` with a password, ``run --follow
  --json`` of a script that succeeds (exit 0) and of one that fails (exit 1), ``jobs``,
  ``logs``, ``receipt``, ``outputs --download``, ``wallet``, a refusal (exit 3) and a usage
  error (exit 2).

Needs PostgreSQL, Redis and Docker.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from accounts.services import api_token_create
from blobs.models import BlobHolding, Upload
from communipute import Client
from config.transactions import durable_call
from hosts.models import Host
from ledger.services import wallet_credit
from tests.live import RATES, Beat, LiveServer, RealAgent, live_server_start

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]

ROOT = Path(__file__).resolve().parents[2]
FUNDS = 100_000_000  # 100 credits

COUNT = """\
import os, sys
words = open('/inputs/data/words.txt').read().split()
print('words', len(words), flush=True)
os.makedirs('/outputs/sub', exist_ok=True)
open('/outputs/result.txt', 'w').write(' '.join(reversed(words)))
open('/outputs/sub/count.txt', 'w').write(str(len(words)))
"""
HELLO = "print('hello from the cli', flush=True)\nopen('/outputs/hi.txt', 'w').write('hi')\n"
FAILS = "import sys\nprint('about to fail', flush=True)\nsys.exit(3)\n"


@pytest.fixture
def server(tmp_path: Path, settings: Any) -> Iterator[LiveServer]:
    live = live_server_start(tmp_path, settings, JOB_LEASE_SECONDS=10)
    yield live
    live.kill()
    print(f"--- daphne ---\n{live.log_tail()}")


@pytest.fixture
def agent(
    server: LiveServer, tmp_path: Path, hana: User, client_for: Callable[[User], Any]
) -> Iterator[RealAgent]:
    token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
    env = {"COMMUNIPUTE_SLOTS": "2"}
    real = RealAgent(tmp_path / "host", server.url, token.json()["token"], "docker", env)
    Host.objects.filter(pk=real.host_id).update(**RATES)
    real.start()
    yield real
    real.kill()
    real.containers_remove()
    print(f"--- agent ---\n{real.log_path.read_text()[-4000:]}")


@pytest.fixture
def beat(server: LiveServer) -> Iterator[Beat]:
    with Beat() as ticking:
        yield ticking
    assert ticking.errors == []


@pytest.fixture
def funded(alice: User) -> User:
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=FUNDS,
        key="sdk-live-fund",
        reason="test",
        source="purchase",
    )
    return alice


@pytest.mark.usefixtures("agent", "beat")
def test_run_uploads_the_input_runs_and_reads_back_log_outputs_and_receipt(
    server: LiveServer, funded: User, tmp_path: Path
) -> None:
    # given: a script and a local input file; a client with a personal token
    (tmp_path / "count.py").write_text(COUNT)
    words = tmp_path / "words.txt"
    words.write_text("the quick brown fox jumps\n")
    _, token = api_token_create(user=funded, name="sdk live")
    client = Client(server.url, token, progress=False)

    # when: run, follow its log, wait
    job = client.run(
        tmp_path / "count.py",
        inputs=[(words, "data/words.txt")],
        cpus=0.5,
        memory_mb=512,
        timeout_seconds=120,
        max_cost=5,
    )
    log = "".join(job.logs(follow=True))
    final = job.wait(timeout=60)

    # then: it succeeded on the input the client uploaded, and said so in its log
    assert (final.status, final.exit_code) == ("succeeded", 0), final.status_reason
    assert log == "words 5\n"
    sha256 = hashlib.sha256(words.read_bytes()).hexdigest()
    assert [(i.path, i.sha256, i.source) for i in final.inputs] == [
        ("data/words.txt", sha256, "store")
    ]
    assert BlobHolding.objects.filter(user=funded, blob__sha256=sha256).exists()

    # the outputs, listed and downloaded (into a folder, names kept), each checked
    outputs = {output.name: output for output in job.outputs()}
    assert sorted(outputs) == ["result.txt", "sub/count.txt"]
    result = b"jumps fox brown quick the"
    assert (outputs["result.txt"].size, outputs["result.txt"].sha256) == (
        len(result),
        hashlib.sha256(result).hexdigest(),
    )
    saved = job.download("result.txt", tmp_path / "out.txt")
    assert saved.read_bytes() == result
    folder = tmp_path / "downloads"
    folder.mkdir()
    assert job.download(outputs["sub/count.txt"], folder).read_text() == "5"
    assert (folder / "sub" / "count.txt").exists()

    # the receipt: settled, what the job cost, and exactly what left the wallet
    receipt = job.receipt()
    assert receipt.is_settled
    assert 0 < receipt.charged_micros == final.cost_micros
    assert receipt.hold_micros == receipt.charged_micros + receipt.refund_micros
    assert [attempt.status for attempt in receipt.attempts] == ["succeeded"]
    wallet = client.wallet()
    assert (wallet.available_micros, wallet.held_micros) == (FUNDS - final.cost_micros, 0)

    # a second upload of the same file sends nothing: complete at creation
    assert client.upload(words) == sha256
    assert sorted(Upload.objects.filter(user=funded, scope="").values_list("parts", flat=True)) == [
        0,
        1,
    ]
    assert [j.id for j in client.jobs(status="succeeded")] == [job.id]


def cli(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "communipute", *args],
        env=env,
        cwd=env["HOME"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.usefixtures("agent", "beat")
def test_the_command_line_logs_in_runs_and_exits_by_the_jobs_outcome(
    server: LiveServer, funded: User, tmp_path: Path
) -> None:
    # given: the command with nothing configured but a config file to write
    home = tmp_path / "home"
    home.mkdir()
    (home / "hello.py").write_text(HELLO)
    (home / "fails.py").write_text(FAILS)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMMUNIPUTE_")},
        "HOME": str(home),
        "PYTHONPATH": str(ROOT / "client"),
        "COMMUNIPUTE_CONFIG": str(home / "client.json"),
    }

    # when: log in with the password on stdin
    logged_in = cli(
        env,
        "login",
        "--url",
        server.url,
        "--username",
        "alice",
        "--password-stdin",
        stdin="correct horse 1\n",
    )

    # then: only a personal token is kept
    assert logged_in.returncode == 0, logged_in.stderr
    kept = json.loads((home / "client.json").read_text())
    assert (kept["url"], kept["username"]) == (server.url, "alice")
    assert funded.api_tokens.filter(revoked_at__isnull=True).count() == 1

    # when: a job that succeeds and one that fails, both followed to their end
    common = ["--max-cost", "5", "--cpus", "0.5", "--timeout", "120", "--follow", "--json"]
    jobs = [
        subprocess.Popen(
            [sys.executable, "-m", "communipute", "run", script, *common],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script in ("hello.py", "fails.py")
    ]
    (ok_out, ok_err), (bad_out, bad_err) = (job.communicate(timeout=120) for job in jobs)

    # then: exit 0 and 1, the final job as JSON on stdout, the log on stderr
    assert jobs[0].returncode == 0, ok_err
    ok = json.loads(ok_out)
    assert (ok["status"], ok["exit_code"]) == ("succeeded", 0)
    assert "hello from the cli\n" in ok_err
    assert jobs[1].returncode == 1, bad_err
    bad = json.loads(bad_out)
    assert (bad["status"], bad["exit_code"]) == ("failed", 3)
    assert "about to fail\n" in bad_err

    # the reads, as JSON
    listed = cli(env, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(job["id"] for job in json.loads(listed.stdout)) == sorted([ok["id"], bad["id"]])
    failed = json.loads(cli(env, "jobs", "--status", "failed", "--json").stdout)
    assert [job["id"] for job in failed] == [bad["id"]]
    log = cli(env, "logs", str(ok["id"]))
    assert (log.returncode, log.stdout) == (0, "hello from the cli\n")
    followed = cli(env, "logs", str(bad["id"]), "-f")
    assert (followed.returncode, followed.stdout) == (1, "about to fail\n")
    receipt = json.loads(cli(env, "receipt", str(ok["id"]), "--json").stdout)
    assert (receipt["job_id"], receipt["totals"]["charged_micros"]) == (ok["id"], ok["cost_micros"])
    downloaded = cli(env, "outputs", str(ok["id"]), "--download", str(home / "out"), "--json")
    assert downloaded.returncode == 0, downloaded.stderr
    [output] = json.loads(downloaded.stdout)
    assert (output["name"], output["saved_to"]) == ("hi.txt", str(home / "out" / "hi.txt"))
    assert (home / "out" / "hi.txt").read_text() == "hi"
    wallet = json.loads(cli(env, "wallet", "--json").stdout)
    assert wallet["available_micros"] == FUNDS - ok["cost_micros"] - bad["cost_micros"]

    # a refusal is exit 3 with the server's code; a usage error is exit 2
    refused = cli(env, "run", "hello.py", "--max-cost", "1000")
    assert refused.returncode == 3
    assert "insufficient_credits" in refused.stderr
    missing = cli(env, "run", "nowhere.py", "--max-cost", "1")
    assert missing.returncode == 2
    assert "no such script" in missing.stderr
