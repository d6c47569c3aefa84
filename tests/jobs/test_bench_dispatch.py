"""Submit-to-offer latency on PostgreSQL (run with -s to see the figures; docs/benchmarks.md).

From the start of POST /api/v1/jobs/ to the moment the job.offer is handed to the channel
layer, with real commits (transactional database), 10 candidate hosts and the hold placed.
"""

from __future__ import annotations

import statistics
import time

import pytest

from tests.jobs.conftest import Wire

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
JOBS = 50


def test_submit_to_offer_latency(client_for, alice, make_host, hana, ledger, monkeypatch):
    # given
    for index in range(10):
        make_host(hana, f"h{index}", cpu_core_hour_micros=50_000 + index)
    ledger.fund(alice, JOBS * 1_000_000)
    client = client_for(alice)
    sent_at: list[float] = []
    wire = Wire()

    def record(host_id, kind, data):
        sent_at.append(time.perf_counter())
        wire.sent.append((host_id, kind, data))

    monkeypatch.setattr("jobs.agent_link.agent_send", record)
    body = {"code": "print(1)", "placement": "auto", "max_cost_micros": 1_000_000}

    # when
    latencies = []
    for _ in range(JOBS):
        started = time.perf_counter()
        response = client.post("/api/v1/jobs/", body, format="json")
        assert response.status_code == 201
        latencies.append((sent_at[-1] - started) * 1000)

    # then
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"\nsubmit-to-offer over {JOBS} jobs: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    assert len(wire.sent) == JOBS
