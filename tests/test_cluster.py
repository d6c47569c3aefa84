"""The cluster end to end: ``scripts/cluster.py`` (HAProxy, two daphne, two Celery workers, beat)
on the test database and Redis, the real agent with Docker, a renter — all through HAProxy.

What it proves, in one job (every process separate, only PostgreSQL and Redis shared):

- an offer made on one daphne (the submit) reaches the agent on the other (the Redis layer), and
  so does a cancel;
- a web process drained in HAProxy keeps its open sockets and gets no new ones;
- the renter's browser socket on daphne B sees, at once, the live log lines the agent sends to
  daphne A, and the cost so far that a Celery worker posts;
- killing daphne A mid-job moves the agent to B within seconds (HAProxy routes around the dead
  process) and loses nothing: the same attempt finishes, its log whole, charged exactly once
  (one unbroken chain of charges, each keyed by where it starts), and the reconciliation is
  clean. The charges and the reaper run in the cluster's own Celery workers, fed by its beat.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db.models import Sum
from websockets.sync.client import connect

from accounts.models import User
from bench._processes import cluster_script as load_cluster_script
from config.transactions import durable_call
from hosts.models import Host, HostStatus
from jobs.models import Job, JobAttempt
from jobs.selectors import job_facts
from ledger.models import AccountKind, LedgerTransaction, Posting
from ledger.money import fee_for
from ledger.selectors import wallet_balances
from ledger.services import ledger_reconcile, wallet_credit
from tests.hosts.test_agent_end_to_end import ROOT, database_url, wait_for
from tests.ledger.helpers import balance
from tests.live import RealAgent

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.cluster,
    pytest.mark.django_db(transaction=True),
]

# Short windows, the same in the cluster (its environment) and here.
TIMINGS = {
    "HOST_HEARTBEAT_SECONDS": 1,
    "HOST_USAGE_REPORT_SECONDS": 1,
    "HOST_OFFLINE_AFTER_SECONDS": 30,
    "JOB_LEASE_SECONDS": 10,
    "JOB_REAP_INTERVAL_SECONDS": 1,
    "HOST_DISCONNECT_GRACE_SECONDS": 20,
}
FUNDS = 100_000_000
PASSWORD = "correct horse 1"  # tests/conftest.py's users
LINES = 30
# A line every 0.25 s: long enough to watch it on one daphne, kill that one, and finish on the
# other.
JOB = (
    "import time\n"
    f"for i in range({LINES}):\n"
    "    print(f'line {i}', flush=True)\n"
    "    time.sleep(0.25)\n"
)


cluster_script = load_cluster_script()


class RunningCluster:
    def __init__(self, process: subprocess.Popen[bytes], state: dict[str, Any]) -> None:
        self.process = process
        self.url: str = state["url"]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.admin_socket: str = state["admin_socket"]
        self.web = {p["name"]: p for p in state["processes"] if p["role"] == "web"}

    def server_of(self, pid: int) -> str:
        """The daphne (web1, web2) that HAProxy sends this client process's connection to."""
        [local_port] = [
            c.laddr.port
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == self.port and c.status == psutil.CONN_ESTABLISHED
        ]
        return self.server_of_port(local_port)

    def server_of_port(self, local_port: int) -> str:
        sessions = cluster_script.haproxy_admin(self.admin_socket, "show sess")
        for line in sessions.splitlines():
            if f"src=127.0.0.1:{local_port} " in line:
                found = re.search(r" srv=(\S+)", line)
                assert found is not None, line
                return found.group(1)
        raise AssertionError(f"no HAProxy session from port {local_port}:\n{sessions}")


@pytest.fixture
def cluster(tmp_path: Path, settings: Any) -> Iterator[RunningCluster]:
    for name, value in TIMINGS.items():
        setattr(settings, name, value)
    var_dir = tmp_path / "cluster"
    state_file = var_dir / "cluster.json"
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        **{name: str(value) for name, value in TIMINGS.items()},
        "DATABASE_URL": database_url(),
        "SECRET_KEY": "cluster-test-secret-key",
        # The test's own users log in many times over; the throttles are tested elsewhere.
        "THROTTLE_AUTH": "1000/min",
        "LOG_LEVEL": "INFO",
    }
    log = (tmp_path / "cluster.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "scripts/cluster.py", "--port", "0", "--var-dir", str(var_dir),
         "--skip-migrate"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the cluster exited:\n{(tmp_path / 'cluster.out').read_text()}")
        return state_file.exists()

    try:
        wait_for(started, "the cluster to start", timeout=90)
        yield RunningCluster(process, json.loads(state_file.read_text()))
    finally:
        # Everything stops before pytest-django flushes the database it shares.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        print(f"--- cluster ---\n{(tmp_path / 'cluster.out').read_text()[-3000:]}")
        for name in ("web1", "web2", "worker1", "worker2", "beat", "haproxy"):
            path = var_dir / "logs" / f"{name}.log"
            if path.exists():
                print(f"--- {name} ---\n{path.read_text(errors='replace')[-2500:]}")


def logged_in(cluster: RunningCluster, user: User) -> tuple[requests.Session, str]:
    """A browser-like session through HAProxy (the session cookie) and the API token it got."""
    if not user.password.startswith("pbkdf2_"):
        # The cluster runs the production settings, whose hashers don't read the tests' MD5.
        user.password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
        user.save(update_fields=["password"])
    session = requests.Session()
    response = session.post(
        f"{cluster.url}/api/v1/auth/login/",
        json={"username": user.username, "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    session.headers["Authorization"] = f"Token {response.json()['token']}"
    return session, session.cookies["sessionid"]


@pytest.fixture
def agent(cluster: RunningCluster, tmp_path: Path, hana: User) -> Iterator[Callable[[], RealAgent]]:
    started: list[RealAgent] = []

    def start() -> RealAgent:
        owner, _ = logged_in(cluster, hana)
        token = owner.post(f"{cluster.url}/api/v1/hosts/enrollments/", json={}, timeout=10)
        assert token.status_code == 201, token.text
        real = RealAgent(tmp_path / "agent", cluster.url, token.json()["token"])
        priced = owner.patch(
            f"{cluster.url}/api/v1/my/hosts/{real.host_id}/",
            json={"cpu_core_hour_micros": 3_600_000, "memory_gb_hour_micros": 360_000},
            timeout=10,
        )
        assert priced.status_code == 200, priced.text
        started.append(real)
        real.start()
        return real

    yield start
    for real in started:
        real.kill()
        real.containers_remove()
        print(f"--- agent ---\n{real.log_path.read_text()[-3000:]}")


def test_a_job_survives_the_death_of_the_daphne_holding_its_agent(
    cluster: RunningCluster, agent: Callable[[], RealAgent], alice: User, hana: User
) -> None:
    # given: a host whose agent holds its socket on one daphne ("A"); the other is "B"
    durable_call(wallet_credit, user=alice, amount_micros=FUNDS, key="cluster-fund", reason="test")
    host = agent()
    assert host.process is not None
    a = cluster.server_of(host.process.pid)
    [b] = [name for name in cluster.web if name != a]
    first_connection = Host.objects.get(pk=host.host_id).connection_id

    # when: A is drained in HAProxy — its open sockets stay, new connections go to B
    cluster_script.server_set_state(cluster.admin_socket, a, "drain")
    renter, session_id = logged_in(cluster, alice)

    def submit(code: str) -> int:
        submitted = renter.post(
            f"{cluster.url}/api/v1/jobs/",
            json={
                "code": code,
                "placement": "auto",
                "cpus": 1,
                "memory_mb": 256,
                "timeout_seconds": 120,
                "max_cost_micros": 10_000_000,
            },
            timeout=10,
        )
        assert submitted.status_code == 201, submitted.text
        return int(submitted.json()["id"])

    def status_of(job_id: int) -> str:
        return str(renter.get(f"{cluster.url}/api/v1/jobs/{job_id}/", timeout=10).json()["status"])

    # a cancel made on B stops the job the agent runs on A
    endless = submit("import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    wait_for(lambda: status_of(endless) == "running", "the endless job running", timeout=30)
    cancelled = renter.post(f"{cluster.url}/api/v1/jobs/{endless}/cancel/", timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    wait_for(lambda: status_of(endless) == "cancelled", "the cancel to reach A", timeout=20)
    wait_for(lambda: not host.containers(), "its container removed", timeout=20)

    job_id = submit(JOB)
    browser = connect(
        f"ws://127.0.0.1:{cluster.port}/ws/jobs/{job_id}/",
        additional_headers={"Cookie": f"sessionid={session_id}", "Origin": cluster.url},
        open_timeout=10,
    )
    with browser:
        # then: the agent stays on A, the renter's socket is on B
        assert cluster.server_of_port(browser.local_address[1]) == b
        assert cluster.server_of(host.process.pid) == a
        received: list[dict[str, Any]] = []

        def log_so_far() -> str:
            return "".join(m["data"] for m in received if m["type"] == "job.log")

        def watch_until(condition: Callable[[], bool], what: str, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}; the socket got {received}"
                try:
                    received.append(json.loads(browser.recv(timeout=left)))
                except TimeoutError:
                    continue

        # the offer went from B (the submit) to A (the agent), the log from A to B, live
        watch_until(lambda: "line 2\n" in log_so_far(), "live log lines on B", 40)
        assert Job.objects.get(pk=job_id).status == "running"

        # when: A dies mid-job
        os.kill(cluster.web[a]["pid"], signal.SIGKILL)
        killed_at = time.monotonic()

        # then: the agent is on B within seconds, with a new connection
        moved = wait_for(
            lambda: (
                Host.objects.filter(pk=host.host_id)
                .exclude(connection_id=first_connection)
                .exclude(status=HostStatus.OFFLINE)
                .exists()
            ),
            "the agent to reconnect",
            timeout=15,
        )
        moved_after = time.monotonic() - killed_at
        assert moved
        assert moved_after < 5
        assert cluster.server_of(host.process.pid) == b
        print(f"the agent moved from {a} to {b} in {moved_after:.2f} s")

        # and the renter, still on B, sees the job to its end, the log whole
        watch_until(
            lambda: any(m["type"] == "job.status" and m["status"] == "succeeded" for m in received),
            "the job to succeed",
            60,
        )
    # the charges posted by a Celery worker (a third process) reached the renter on B too
    pushed = [m for m in received if m["type"] == "job.usage"]
    assert pushed, received
    assert pushed[-1]["cost_micros"] > 0
    expected_log = "".join(f"line {i}\n" for i in range(LINES))
    wait_for(
        lambda: (
            renter.get(f"{cluster.url}/api/v1/jobs/{job_id}/logs/", timeout=10).json()["data"]
            == expected_log
        ),
        "the whole log stored",
    )

    # and it ran once (the same attempt, resumed) and was charged once
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempt, job.host_id) == ("succeeded", 1, host.host_id)
    [attempt] = JobAttempt.objects.filter(job_id=job_id)
    wait_for(lambda: wallet_balances(alice)["held_micros"] == 0, "the job settled", timeout=20)
    attempt.refresh_from_db()
    receipt = renter.get(f"{cluster.url}/api/v1/jobs/{job_id}/receipt/", timeout=10).json()
    charged = receipt["totals"]["charged_micros"]
    assert charged > 0
    assert (attempt.usage["is_final"], attempt.charged_micros) == (True, charged)
    assert receipt["attempts"][0]["usage_cost_micros"] == charged
    # the wallet paid both jobs' charges (the cancelled one's too), the host earned them less fees
    stopped = Job.objects.get(pk=endless).cost_micros
    assert FUNDS - wallet_balances(alice)["balance_micros"] == charged + stopped
    assert balance(AccountKind.EARNINGS_PENDING, user=hana) == (
        charged - fee_for(charged) + stopped - fee_for(stopped)
    )
    # one unbroken chain of charges: each starts where the one before ended, none repeated
    chain = []
    for key in LedgerTransaction.objects.filter(key__startswith=f"usage:{job_id}:").values_list(
        "key", flat=True
    ):
        before = int(key.rsplit(":", 1)[1])
        paid = -Posting.objects.filter(
            transaction__key=key, account__kind=AccountKind.ESCROW
        ).aggregate(total=Sum("amount_micros"))["total"]
        chain.append((before, paid))
    chain.sort()
    position = 0
    for before, paid in chain:
        assert before == position, chain
        position += paid
    assert position == charged
    assert ledger_reconcile(job_facts=job_facts).problems == []
