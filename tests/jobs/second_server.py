"""The other server's side of tests/jobs/test_shared_engine_live.py, run as a process of its own
(``python -m tests.jobs.second_server``) with the second server's DATABASE_URL and REDIS_URL:
this test process's ORM is bound to the test database, the second server has its own.

It makes a host owner and a renter there, draws the host id the test asks for (``--host-id``:
the other server's host has it too), prints an enrollment token as a line of JSON, waits for
the host to come online, gives it tests.live.RATES, submits ``--jobs`` jobs once the file
``--go`` exists, runs the reaper and the poster, and prints the outcome (each job's status and
attempts) as a last line of JSON once every job is settled.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")

import django

django.setup()

from django.db import connection  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from accounts.models import User  # noqa: E402
from config.transactions import durable_call  # noqa: E402
from hosts.models import Host, HostStatus  # noqa: E402
from jobs.models import Job  # noqa: E402
from jobs.tasks import jobs_reap_pass, usage_charges_post  # noqa: E402
from ledger.services import wallet_credit  # noqa: E402
from tests.live import RATES  # noqa: E402

TIMEOUT_SECONDS = 120
FIRST_JOB_ID = 1000


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"second server: timed out waiting for {what}")
        time.sleep(0.2)


def _client(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host-id", type=int, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--code", required=True)
    parser.add_argument("--go", type=Path, required=True)
    args = parser.parse_args()

    owner = User.objects.create_user(username="olga", email="olga@example.com", password="x y z 1")
    renter = User.objects.create_user(username="rob", email="rob@example.com", password="x y z 1")
    durable_call(
        wallet_credit,
        user=renter,
        amount_micros=100_000_000,
        key="second-server-fund",
        reason="test",
        source="purchase",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('hosts_host', 'id'), %s, false)", [args.host_id]
        )
        # Job ids of their own (the first server's start at 1): an agent that took the other's
        # containers for its own would ask its server about jobs it never had, and kill them.
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('jobs_job', 'id'), %s, false)", [FIRST_JOB_ID]
        )
    token = _client(owner).post("/api/v1/hosts/enrollments/", {}, format="json").json()["token"]
    print(json.dumps({"token": token}), flush=True)

    _wait(
        lambda: Host.objects.filter(pk=args.host_id, status=HostStatus.ONLINE).exists(),
        f"host {args.host_id} online",
    )
    Host.objects.filter(pk=args.host_id).update(**RATES)
    _wait(args.go.exists, "the go")
    body = {
        "code": args.code,
        "placement": "auto",
        "cpus": 0.5,
        "memory_mb": 512,
        "timeout_seconds": 60,
        "max_cost_micros": 10_000_000,
    }
    job_ids = []
    for _ in range(args.jobs):
        response = _client(renter).post("/api/v1/jobs/", body, format="json")
        assert response.status_code == 201, response.json()
        job_ids.append(int(response.json()["id"]))

    def settled() -> bool:
        jobs_reap_pass()
        usage_charges_post()
        done = Job.objects.filter(pk__in=job_ids, hold_released_at__isnull=False).count()
        return done == len(job_ids)

    _wait(settled, "the jobs settled")
    outcome = [
        {
            "id": job.pk,
            "status": job.status,
            "reason": job.status_reason,
            "cost_micros": job.cost_micros,
            "attempts": [
                {
                    "host_id": a.host_id,
                    "status": a.status,
                    "exit_code": a.exit_code,
                    "reason": a.reason,
                    "charged_micros": a.charged_micros,
                    "accepted_at": a.accepted_at and a.accepted_at.isoformat(),
                    "finished_at": a.finished_at and a.finished_at.isoformat(),
                }
                for a in job.attempts.order_by("number")
            ],
        }
        for job in Job.objects.filter(pk__in=job_ids).order_by("pk")
    ]
    print(json.dumps({"jobs": outcome}), flush=True)


if __name__ == "__main__":
    main()
