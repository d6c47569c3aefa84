"""Two servers, one host id, one Docker engine (issue 12): two real daphnes, each with its own
database and channel layer (``make test`` beside ``make demo``, or two deployments), and one
real agent of each, enrolled as the same host id, running jobs at once on the same engine.

Before issue 12 containers carried only the host id, so an agent that (re)started adopted and
removed the other's containers: its jobs ended ``exit code 137`` and their renter was charged.
Now they carry the agent's install id and the server's identity too. The test restarts one
agent while both run jobs: its reconciliation must leave the other's containers alone.

The second server's API, reaper and poster run in a process of its own
(tests/jobs/second_server.py): this process's ORM is bound to the test database. Its database
is created and migrated here (about 15 s); it uses Redis db SECOND_REDIS_DB. Needs PostgreSQL,
Redis and Docker.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings as django_settings
from redis import Redis

from config.transactions import durable_call
from hosts.models import Host
from jobs.models import AttemptStatus, Job, JobAttempt, JobStatus
from jobs.selectors import job_facts
from ledger.providers import providers
from ledger.services import wallet_credit
from tests.hosts.test_agent_end_to_end import ROOT, database_url
from tests.jobs.metering_steps import captured, charged
from tests.live import RATES, Beat, LiveServer, RealAgent, live_server_start, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

JOBS_EACH = 2
# Long enough that one agent's restart falls while both agents' containers run.
CODE = "import time\ntime.sleep(6)\nprint('done', flush=True)\n"
SECOND_REDIS_DB = 15
# Leases outlast the agent's restart (its attempts are kept, not lost and run again).
LEASE_SECONDS = 30


def _second_database_url() -> str:
    parts = urlsplit(database_url())
    name = f"{django_settings.DATABASES['default']['NAME']}_second"
    return urlunsplit(parts._replace(path=f"/{name}"))


def _second_redis_url() -> str:
    parts = urlsplit(str(django_settings.REDIS_URL))
    return urlunsplit(parts._replace(path=f"/{SECOND_REDIS_DB}"))


def _psql(url: str, sql: str) -> None:
    """Run ``sql`` on the server's ``postgres`` database (CREATE/DROP DATABASE: autocommit)."""
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def second_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A second daphne on a database and channel layer of its own, migrated fresh."""
    url, redis = _second_database_url(), _second_redis_url()
    name = urlsplit(url).path.lstrip("/")
    _psql(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _psql(url, f'CREATE DATABASE "{name}"')
    redis_client = Redis.from_url(redis)
    redis_client.flushdb()
    redis_client.close()
    server = LiveServer(
        tmp_path / "second.log",
        {
            "DATABASE_URL": url,
            "REDIS_URL": redis,
            "MEDIA_ROOT": str(tmp_path / "second-media"),
            "BLOB_DIR": str(tmp_path / "second-blobs"),
            "JOB_LEASE_SECONDS": LEASE_SECONDS,
        },
    )
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        env=server.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert migrated.returncode == 0, migrated.stderr
    server.start()
    yield server
    server.kill()
    print(f"--- second daphne ---\n{server.log_tail()}")
    _psql(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _intervals(attempts: list[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    return [
        (datetime.fromisoformat(a["accepted_at"]), datetime.fromisoformat(a["finished_at"]))
        for a in attempts
        if a["accepted_at"]
    ]


def _overlap(left: list[tuple[datetime, datetime]], right: list[tuple[datetime, datetime]]) -> bool:
    return any(a < d and c < b for a, b in left for c, d in right)


def test_two_servers_agents_with_one_host_id_on_one_engine_leave_each_others_jobs_alone(
    tmp_path, settings, monkeypatch, second_server, hana, alice, client_for
):
    monkeypatch.setattr(providers, "job_facts", job_facts)
    first_server = live_server_start(tmp_path, settings, JOB_LEASE_SECONDS=LEASE_SECONDS)
    durable_call(
        wallet_credit,
        user=alice,
        amount_micros=100_000_000,
        key="shared-engine-fund",
        reason="test",
        source="purchase",
    )
    agents: list[RealAgent] = []
    helper: subprocess.Popen[str] | None = None
    try:
        # given: an agent of the first server, host id N, two slots
        token = client_for(hana).post("/api/v1/hosts/enrollments/", {}, format="json")
        slots = {"COMMUNIPUTE_SLOTS": str(JOBS_EACH)}
        first = RealAgent(tmp_path / "first", first_server.url, token.json()["token"], env=slots)
        Host.objects.filter(pk=first.host_id).update(**RATES)
        agents.append(first)
        first.start()

        # and: an agent of the second server, enrolled there as host id N too
        go = tmp_path / "go"
        helper = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.jobs.second_server",
                f"--host-id={first.host_id}",
                f"--jobs={JOBS_EACH}",
                f"--code={CODE}",
                f"--go={go}",
            ],
            env=second_server.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert helper.stdout is not None
        second_token = json.loads(helper.stdout.readline())["token"]
        second = RealAgent(tmp_path / "second", second_server.url, second_token, env=slots)
        assert second.host_id == first.host_id
        assert second.install_id != first.install_id
        agents.append(second)
        second.start(wait=False)

        with Beat():
            # when: both servers get jobs at once
            wait_for(lambda: "connected to" in second.log_path.read_text(), "the second agent")
            go.touch()
            body = {
                "code": CODE,
                "placement": "auto",
                "cpus": 0.5,
                "memory_mb": 512,
                "timeout_seconds": 60,
                "max_cost_micros": 10_000_000,
            }
            renter = client_for(alice)
            job_ids = [
                int(renter.post("/api/v1/jobs/", body, format="json").json()["id"])
                for _ in range(JOBS_EACH)
            ]

            # and: while both agents' containers run, the first agent is killed and started
            # again (it reconciles the engine's containers labelled with its host id)
            def running(agent: RealAgent) -> int:
                return sum(c.status == "running" for c in agent.containers(own=True))

            wait_for(
                lambda: running(first) == JOBS_EACH and running(second) == JOBS_EACH,
                "both agents' jobs running",
                60,
            )
            shared = first.containers()
            assert len(shared) == 2 * JOBS_EACH  # one host id on all of them
            first.signal(signal.SIGKILL)
            first.start()
            wait_for(
                lambda: first.log_path.read_text().count("connected to") == 2, "the first back"
            )

            # then: every job of both servers succeeds, charged once
            wait_for(
                lambda: (
                    Job.objects.filter(pk__in=job_ids, hold_released_at__isnull=False).count()
                    == JOBS_EACH
                ),
                "the first server's jobs settled",
                120,
            )
            out, _ = helper.communicate(timeout=120)
        assert helper.returncode == 0, out
        theirs = json.loads(out.strip().splitlines()[-1])["jobs"]
        for job in theirs:
            assert job["status"] == "succeeded", job
            [attempt] = job["attempts"]
            assert attempt["exit_code"] == 0, attempt
            assert 0 < attempt["charged_micros"] == job["cost_micros"], job
        ours = list(Job.objects.filter(pk__in=job_ids))
        for job in ours:
            assert job.status == JobStatus.SUCCEEDED, (job.status, job.status_reason)
            [attempt] = JobAttempt.objects.filter(job=job)
            assert (attempt.status, attempt.exit_code) == (AttemptStatus.SUCCEEDED, 0)
            assert charged(job) == captured(job) == job.cost_micros > 0

        # and: they ran at the same time, on one engine
        mine = [
            (attempt.accepted_at, attempt.finished_at)
            for attempt in JobAttempt.objects.filter(job_id__in=job_ids)
            if attempt.accepted_at and attempt.finished_at
        ]
        assert len(mine) == JOBS_EACH
        assert _overlap(
            mine,
            _intervals([a for job in theirs for a in job["attempts"]]),
        )
        print(f"shared engine: {len(ours)} + {len(theirs)} jobs, host id {first.host_id} on both")
    finally:
        if helper is not None and helper.poll() is None:
            helper.kill()
            helper.wait(10)
        for agent in agents:
            agent.kill()
            agent.containers_remove()
            print(f"--- agent {agent.root.name} ---\n{agent.log_path.read_text()[-4000:]}")
        first_server.kill()
        print(f"--- first daphne ---\n{first_server.log_tail()}")
