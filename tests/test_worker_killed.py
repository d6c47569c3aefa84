"""A Celery worker killed mid-task leaves no half-done money work (docs/operations.md, "A worker
killed mid-task"). Real processes: ``celery -A config worker`` on the test's PostgreSQL and a
Redis broker, killed with SIGKILL while its money tasks wait inside their transactions.

The kill lands inside the transaction deterministically: the test first takes, in a connection
of its own, a row lock the task's code takes anyway (the poster's job row lock, the payout row
lock of ``payout_complete``, an owner's earnings account lock in maturity), sends the task, and
waits until PostgreSQL shows the worker's backend waiting on that lock (``pg_stat_activity``,
``pg_locks``, ``pg_blocking_pids``) — for the poster after it has written (``backend_xid``).

- The whole worker killed (main process and pool): nothing of the open transactions is in the
  database, the ledger reconciles; Redis still holds the messages (unacknowledged: acks_late),
  and a second worker, once the visibility timeout passed, gets them again and does the work
  exactly once — one Stripe transfer for the payout (the same idempotency key twice), one charge,
  one maturity per owner.
- A pool child killed alone: nothing half-done either; the main process acknowledges the message
  (``task_reject_on_worker_lost`` off) so it is not delivered again, and the next tick of the
  periodic task does the work, once.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis
from celery import Celery
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from accounts.models import User
from config.transactions import durable_call
from hosts.models import Host, HostStatus
from jobs.billing import usage_key
from jobs.models import Job, JobAttempt
from jobs.selectors import job_facts
from ledger.models import Account, AccountKind, LedgerTransaction, TransactionKind
from ledger.payments.models import ConnectedAccount, OnboardingStatus, Payout, PayoutStatus
from ledger.payments.money import payout_request
from ledger.services import earnings_mature, ledger_reconcile, wallet_credit
from tests.hosts.test_agent_end_to_end import ROOT, database_url, wait_for
from tests.jobs.helpers import say
from tests.jobs.metering_steps import RATES, expected_cost, final, metered_job, report, run
from tests.ledger.helpers import assert_invariants
from tests.ledger.stripe_fakes import FakeConnect

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

# The workers of this module consume a queue of their own: whatever else the test's Redis
# database holds (a cluster test's beat ticks) is not theirs to run.
QUEUE = "worker-killed-test"
# Short, so that the second worker gets the dead worker's messages at once.
VISIBILITY_TIMEOUT_SECONDS = 2
POSTER = "jobs.tasks.usage_charges_post"
PAYOUT_TRANSFER = "ledger.payments.tasks.payout_transfer_task"
MATURITY = "ledger.tasks.earnings_mature_task"
FREE = {"cpu_core_hour_micros": 0, "memory_gb_hour_micros": 0, "gpu_hour_micros": 0}


# --- Processes and locks ------------------------------------------------------------------------


class Worker:
    """One ``celery -A config worker`` (prefork) in its own process group; its database
    connections carry its name as application_name, so PostgreSQL shows which are its."""

    def __init__(self, name: str, log_dir: Path, env: dict[str, str], concurrency: int) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
             "--hostname", f"{name}@%h", "--queues", QUEUE, "--concurrency", str(concurrency),
             "--pool", "prefork", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=ROOT,
            env={**env, "DATABASE_URL": f"{database_url()}?application_name={name}"},
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ready(self) -> None:
        def started() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.output()[-3000:]}")
            return f"{self.name}@" in self.output() and " ready." in self.output()

        wait_for(started, f"{self.name} to start", timeout=60)

    def pool(self) -> list[psutil.Process]:
        """The pool's live processes (a killed one the main process has not reaped is not)."""
        return [p for p in psutil.Process(self.process.pid).children() if not _gone(p)]

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(self.process.pid), *self.pool()]

    def kill(self) -> None:
        """SIGKILL the whole worker: the main process and every pool process."""
        with_pool = self.processes()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        for process in with_pool:
            wait_for(functools.partial(_gone, process), f"{self.name}'s process {process.pid} dead")

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), as systemd stops it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Locker:
    """A connection of the test's own that holds row locks in one open transaction."""

    def __init__(self) -> None:
        db = django_settings.DATABASES["default"]
        self.connection = psycopg.connect(
            host=db["HOST"],
            port=db["PORT"] or 5432,
            user=db["USER"],
            password=db["PASSWORD"] or None,
            dbname=db["NAME"],
            application_name="worker-killed-test-locks",
        )
        self.pid = int(self.connection.info.backend_pid)

    def lock(self, model: Any, *pks: int) -> None:
        table = model._meta.db_table
        rows = self.connection.execute(
            f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",  # noqa: S608
            [list(pks)],
        ).fetchall()
        assert len(rows) == len(pks)

    def release(self) -> None:
        self.connection.rollback()

    def close(self) -> None:
        self.connection.close()


@dataclass(frozen=True)
class Waiting:
    pid: int
    wrote: bool  # the transaction has written (PostgreSQL gave it an xid)
    query: str

    @property
    def table(self) -> str:
        """The table the waiting statement selects from."""
        found = re.search(r'\bFROM "?(\w+)"?', self.query)
        return found[1] if found else ""


def waiting_on(locker: Locker, worker: Worker) -> list[Waiting]:
    """The worker's backends waiting for a lock the locker holds, inside their transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.pid, a.backend_xid IS NOT NULL, a.query FROM pg_stat_activity a "
            "WHERE a.application_name = %s AND a.state = 'active' AND a.wait_event_type = 'Lock'"
            " AND a.xact_start IS NOT NULL AND %s = ANY(pg_blocking_pids(a.pid))"
            " AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)"
            " ORDER BY a.pid",
            [worker.name, locker.pid],
        )
        return [Waiting(pid, wrote, query) for pid, wrote, query in cursor.fetchall()]


def no_sessions(worker: Worker) -> bool:
    """None of the worker's database sessions is left (each one's transaction has ended)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [worker.name]
        )
        return int(cursor.fetchone()[0]) == 0


def pg_setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return str(cursor.fetchone()[0])


def session_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(cursor.fetchone()[0])


class Broker:
    """Sends tasks by name to the workers' queue and reads what Redis holds of them."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)
        self.app = Celery("worker-killed-test", broker=url, set_as_current=False)
        self.sent: list[str] = []

    def send(self, name: str, *args: Any) -> str:
        task_id = str(self.app.send_task(name, args=list(args), queue=QUEUE).id)
        self.sent.append(task_id)
        return task_id

    def queued(self) -> int:
        return int(self.redis.llen(QUEUE))

    def unacked(self) -> list[str]:
        """The ids of this module's messages delivered to a worker and not acknowledged."""
        ids = []
        for raw in self.redis.hvals("unacked"):
            message, _exchange, routing_key = json.loads(raw)
            if routing_key == QUEUE:
                ids.append(message["headers"]["id"])
        return ids

    def clear(self) -> None:
        self.redis.delete(QUEUE, f"_kombu.binding.{QUEUE}", f"_kombu.binding_permanent.{QUEUE}")
        for tag, raw in self.redis.hgetall("unacked").items():
            if json.loads(raw)[2] == QUEUE:
                self.redis.hdel("unacked", tag)
                self.redis.zrem("unacked_index", tag)

    def close(self) -> None:
        self.app.close()
        self.redis.close()


@pytest.fixture
def stripe_connect() -> Iterator[FakeConnect]:
    server = FakeConnect()
    yield server
    server.stop()


@pytest.fixture
def broker() -> Iterator[Broker]:
    found = Broker(os.environ["REDIS_URL"])
    found.clear()
    yield found
    found.clear()
    found.close()


@pytest.fixture
def locker() -> Iterator[Locker]:
    held = Locker()
    yield held
    held.close()


@pytest.fixture
def start_worker(
    tmp_path: Path, stripe_connect: FakeConnect, locker: Locker
) -> Iterator[Callable[..., Worker]]:
    """Start workers with the production settings on the test database; every one is killed,
    and its database sessions gone, before pytest-django flushes the database."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "SECRET_KEY": "worker-killed-test-secret-key",
        "COMMUNIPUTE_VAR_DIR": str(tmp_path / "var"),
        "CELERY_BROKER_URL": os.environ["REDIS_URL"],
        "LOG_LEVEL": "INFO",
        # Earnings of a settled job mature at once.
        "EARNINGS_DISPUTE_WINDOW_SECONDS": "0",
        # Stripe is the fake Connect server (tests/ledger/stripe_fakes.py), over real HTTP.
        "PAYMENT_PROVIDER": "stripe",
        "STRIPE_SECRET_KEY": "sk_test_communipute",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_communipute",
        "STRIPE_WEBHOOK_SECRET": "whsec_test_communipute",
        "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_test_connect",
        "STRIPE_API_BASE": stripe_connect.url,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
    }
    started: list[Worker] = []

    def start(name: str, *, concurrency: int, visibility_timeout: int | None = None) -> Worker:
        worker_env = dict(env)
        if visibility_timeout is not None:
            worker_env["CELERY_BROKER_VISIBILITY_TIMEOUT"] = str(visibility_timeout)
        worker = Worker(name, tmp_path, worker_env, concurrency)
        started.append(worker)
        worker.ready()
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(10)
    locker.release()
    for worker in started:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                [worker.name],
            )
        wait_for(functools.partial(no_sessions, worker), f"{worker.name}'s sessions to end")
        print(f"--- {worker.name} ---\n{worker.output()[-4000:]}")


# --- The money work ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_agent_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process plays the agents (tests.jobs.helpers.say); nothing listens to what the
    server would push to them or to the owners' sockets."""
    monkeypatch.setattr("jobs.agent_link.agent_send", lambda host_id, kind, data: None)
    monkeypatch.setattr("jobs.events.job_event_push", lambda job_id, event: None)
    monkeypatch.setattr("jobs.events.job_events_push", lambda pushes: None)


def _user(name: str) -> User:
    return User.objects.create_user(username=name, email=f"{name}@example.com", password="x")


def _host(owner: User, name: str, rates: dict[str, int]) -> Host:
    return Host.objects.create(
        owner=owner,
        name=name,
        cpus=8,
        memory_mb=16384,
        slots=4,
        status=HostStatus.ONLINE,
        last_seen_at=timezone.now(),
        docker_available=True,
        disk_free_mb=100_000,
        **rates,
    )


def _fund(renter: User, micros: int) -> None:
    durable_call(
        wallet_credit, user=renter, amount_micros=micros, key=f"funds:{renter.pk}", reason="test"
    )


def _settled_job(renter: User, owner: User) -> Job:
    """A job of ``renter`` that ran on ``owner``'s host and settled: its owner's earnings are
    pending, 130,000 gross less the fee."""
    host = _host(owner, f"{owner.username}-box", RATES)
    job = metered_job(renter, host)
    run(job, host)
    say(host, "job.finished", **final(job, 2, "100.0", "60.0"))
    job.refresh_from_db()
    assert job.hold_released_at is not None
    return job


@dataclass(frozen=True)
class Charges:
    """Two running jobs with usage reported and not charged yet: one on a priced host, one on
    a free host (nothing to charge: the poster only marks its reports charged, a write)."""

    priced: Job
    free: Job

    @staticmethod
    def make(renter: User, owner: User) -> Charges:
        priced_host = _host(owner, "priced", RATES)
        free_host = _host(owner, "free", FREE)
        priced, free = metered_job(renter, priced_host), metered_job(renter, free_host)
        for job, host in ((priced, priced_host), (free, free_host)):
            run(job, host)
            report(host, job, 1, "10.0", "10.0")
        return Charges(priced, free)

    def attempts(self) -> list[tuple[int, int, int]]:
        """(charged µcr, charged seq, job cost) of the priced and the free job's attempt."""
        return [
            (a.charged_micros, a.charged_seq, a.job.cost_micros)
            for a in JobAttempt.objects.filter(job__in=[self.priced, self.free])
            .select_related("job")
            .order_by("job_id")
        ]

    def capture_keys(self) -> list[str]:
        return list(
            LedgerTransaction.objects.filter(
                job_id__in=[self.priced.pk, self.free.pk], kind=TransactionKind.CAPTURE
            )
            .exclude(key__startswith="job-")
            .values_list("key", flat=True)
        )


COST = expected_cost(10_000, 10_000)
# Charges.attempts() before the poster ran (no report charged: seq -1) and after.
NOT_CHARGED = [(0, -1, 0), (0, -1, 0)]
CHARGED = [(COST, 1, COST), (0, 1, 0)]


def _account_pks(owner: User) -> list[int]:
    return list(
        Account.objects.filter(
            user=owner, kind__in=[AccountKind.EARNINGS_PENDING, AccountKind.EARNINGS_AVAILABLE]
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _maturities() -> list[int | None]:
    """The owners of the maturity transactions, in order (one account user per transaction)."""
    return [
        txn.postings.filter(account__kind=AccountKind.EARNINGS_AVAILABLE).get().account.user_id
        for txn in LedgerTransaction.objects.filter(kind=TransactionKind.MATURITY).order_by("pk")
    ]


def _balances() -> dict[int, int]:
    return dict(Account.objects.values_list("pk", "balance_micros"))


def _reconciled() -> None:
    report_ = ledger_reconcile(job_facts=job_facts)
    assert report_.problems == []
    assert_invariants()


# --- The tests ------------------------------------------------------------------------------------


def test_a_worker_killed_mid_transaction_leaves_nothing_and_the_redelivery_does_it_once(
    alice: User,
    hana: User,
    settings: Any,
    stripe_connect: FakeConnect,
    broker: Broker,
    locker: Locker,
    start_worker: Callable[..., Worker],
) -> None:
    # given: the three money tasks' work waiting — a payout transfer, charges to post, earnings
    # of two owners to mature
    settings.PAYOUT_MIN_MICROS = 1
    bob, carol, dave = _user("bob"), _user("carol"), _user("dave")
    _fund(alice, 10_000_000)
    _settled_job(alice, carol)
    earnings_mature(now=timezone.now() + timedelta(days=30))
    ConnectedAccount.objects.create(
        user=carol,
        provider="stripe",
        stripe_account_id="acct_ready",
        onboarding_status=OnboardingStatus.COMPLETE,
    )
    earned = Account.objects.get(user=carol, kind=AccountKind.EARNINGS_AVAILABLE).balance_micros
    payout = durable_call(payout_request, owner=carol, amount_micros=earned // 10_000 * 10_000)
    _settled_job(alice, hana)
    _settled_job(alice, bob)
    charges = Charges.make(alice, dave)
    hana_due = Account.objects.get(user=hana, kind=AccountKind.EARNINGS_PENDING).balance_micros
    before = _balances()
    last_txn = LedgerTransaction.objects.order_by("-pk").values_list("pk", flat=True).first()
    assert charges.attempts() == NOT_CHARGED
    # The test holds the locks each task takes inside its transaction: the priced job's row (the
    # poster's _jobs_lock), the payout's row (payout_complete), bob's earnings accounts (his
    # maturity; hana's, before his by owner, is a transaction of its own).
    locker.lock(Job, charges.priced.pk)
    locker.lock(Payout, payout.pk)
    locker.lock(Account, *_account_pks(bob))

    # when: a worker takes the three tasks and each waits on its lock, inside its transaction
    first = start_worker("killed", concurrency=3, visibility_timeout=VISIBILITY_TIMEOUT_SECONDS)
    sent = [broker.send(POSTER), broker.send(PAYOUT_TRANSFER, payout.pk), broker.send(MATURITY)]
    waiting = wait_for(
        lambda: (found := waiting_on(locker, first)) and len(found) == 3 and found,
        "the three tasks to wait on the test's locks",
        timeout=30,
    )
    blocked_at = time.monotonic()
    by_table = {w.table: w for w in waiting}
    assert sorted(by_table) == ["jobs_job", "ledger_account", "payments_payout"], waiting
    assert by_table["jobs_job"].wrote  # the free job's reports marked charged, uncommitted
    assert [t.idempotency_key for t in stripe_connect.requests_to("POST", "/v1/transfers")] == [
        f"payout:{payout.pk}"
    ]
    assert _maturities() == [carol.pk, hana.pk]  # hana's own transaction committed
    assert sorted(broker.unacked()) == sorted(sent)
    # ... and the whole worker is killed: main process and pool
    assert len(first.pool()) == 3
    first.kill()
    if pg_setting("client_connection_check_interval") == "0":
        # PostgreSQL does not notice a dead client while its session waits on a lock: the
        # sessions wait on, in their open transactions.
        assert len(waiting_on(locker, first)) == 3

    # then: nothing of the three open transactions is in the database
    def nothing_half_done() -> None:
        assert charges.attempts() == NOT_CHARGED
        assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.PENDING
        assert _maturities() == [carol.pk, hana.pk]
        written = LedgerTransaction.objects.filter(pk__gt=last_txn).values_list("kind", flat=True)
        assert list(written) == [TransactionKind.MATURITY]  # hana's alone
        moved = {pk: b - before.get(pk, 0) for pk, b in _balances().items() if b != before.get(pk)}
        assert moved == dict(zip(_account_pks(hana), [-hana_due, hana_due], strict=True))
        _reconciled()

    nothing_half_done()
    # The killed worker's sessions wait on the locks still; released, they end, rolled back.
    locker.release()
    wait_for(lambda: no_sessions(first), "the killed worker's sessions to end")
    nothing_half_done()
    # Redis holds the three messages still: nobody acknowledged them
    assert sorted(broker.unacked()) == sorted(sent)

    # when: a second worker starts once the visibility timeout has passed
    time.sleep(max(0.0, blocked_at + VISIBILITY_TIMEOUT_SECONDS + 0.5 - time.monotonic()))
    second = start_worker("second", concurrency=3, visibility_timeout=VISIBILITY_TIMEOUT_SECONDS)

    # then: it gets the three messages again and does the work, once
    def done() -> bool:
        return (
            Payout.objects.get(pk=payout.pk).status == PayoutStatus.PAID
            and charges.attempts() == CHARGED
            and _maturities() == [carol.pk, hana.pk, bob.pk]
        )

    wait_for(done, "the redelivered tasks to finish", timeout=30)
    wait_for(lambda: broker.unacked() == [] and broker.queued() == 0, "the messages acknowledged")
    second.stop()
    for name, task_id in zip((POSTER, PAYOUT_TRANSFER, MATURITY), sent, strict=True):
        assert second.output().count(f"Task {name}[{task_id}] received") == 1
        assert f"Task {name}[{task_id}] succeeded" in second.output()
        assert f"[{task_id}] succeeded" not in first.output()
    transfers = stripe_connect.requests_to("POST", "/v1/transfers")
    assert [t.idempotency_key for t in transfers] == [f"payout:{payout.pk}"] * 2
    assert len(stripe_connect.state.transfers) == 1  # Stripe answered the repeat with the first
    paid = LedgerTransaction.objects.filter(kind=TransactionKind.PAYOUT_PAID)
    assert list(paid.values_list("key", flat=True)) == [f"payout:{payout.pk}:paid"]
    assert charges.capture_keys() == [usage_key(charges.priced.pk, 1, 0)]
    assert _maturities() == [carol.pk, hana.pk, bob.pk]
    assert Account.objects.get(user=bob, kind=AccountKind.EARNINGS_PENDING).balance_micros == 0
    _reconciled()


def test_a_pool_process_killed_alone_leaves_nothing_and_the_next_tick_charges_once(
    alice: User,
    hana: User,
    broker: Broker,
    locker: Locker,
    start_worker: Callable[..., Worker],
) -> None:
    # given: charges to post, the priced job's row locked by the test
    _fund(alice, 10_000_000)
    charges = Charges.make(alice, hana)
    before = _balances()
    transactions = LedgerTransaction.objects.count()
    locker.lock(Job, charges.priced.pk)
    worker = start_worker("pool", concurrency=1)
    [child] = worker.pool()
    task_id = broker.send(POSTER)
    [waiting] = wait_for(lambda: waiting_on(locker, worker), "the poster to wait on the lock")
    assert waiting.wrote
    assert broker.unacked() == [task_id]

    # when: the pool process running it is killed, the worker's main process is not
    child.kill()

    # then: the main process sees it lost, acknowledges the message and starts a new process
    wait_for(lambda: broker.unacked() == [], "the message acknowledged")
    assert broker.queued() == 0
    assert worker.process.poll() is None
    [replacement] = wait_for(worker.pool, "a new pool process")
    assert replacement.pid != child.pid
    wait_for(lambda: "WorkerLostError" in worker.output(), "the worker to report the loss")

    # ... nothing of its transaction is in the database, before and after its session ends
    def nothing_half_done() -> None:
        assert charges.attempts() == NOT_CHARGED
        assert LedgerTransaction.objects.count() == transactions
        assert _balances() == before
        _reconciled()

    nothing_half_done()
    locker.release()
    wait_for(lambda: not session_alive(waiting.pid), "the killed process's session to end")
    nothing_half_done()
    # ... and nobody runs it again: the message is gone
    assert (broker.queued(), broker.unacked()) == (0, [])

    # when: the next tick of metering-charges-post
    tick = broker.send(POSTER)

    # then: the charges are posted, once
    wait_for(lambda: f"Task {POSTER}[{tick}] succeeded" in worker.output(), "the next tick")
    worker.stop()
    assert charges.attempts() == CHARGED
    assert charges.capture_keys() == [usage_key(charges.priced.pk, 1, 0)]
    _reconciled()
