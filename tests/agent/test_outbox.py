from agent.outbox import Outbox


def _log(offset, data, job_id=1, attempt=1):
    return {"job_id": job_id, "attempt": attempt, "offset": offset, "data": data}


def _usage(seq, job_id=1, attempt=1):
    return {"job_id": job_id, "attempt": attempt, "seq": seq, "cpu_seconds": float(seq)}


def test_messages_stay_until_acknowledged_in_order():
    outbox = Outbox()
    accept = outbox.add("job.accept", {"job_id": 1, "attempt": 1})
    started = outbox.add("job.started", {"job_id": 1, "attempt": 1, "phase": "running"})

    assert [p.type for p in outbox.pending()] == ["job.accept", "job.started"]
    assert outbox.ack(accept.id) is True
    assert outbox.ack(accept.id) is False
    assert [p.id for p in outbox.pending()] == [started.id]


def test_log_ack_drops_the_chunks_the_server_holds():
    outbox = Outbox()
    outbox.add("job.log", _log(0, "hello "))
    outbox.add("job.log", _log(6, "wörld"))  # 6 bytes in UTF-8
    outbox.add("job.log", _log(0, "other", attempt=2))

    assert outbox.log_ack(1, 1, 6) == 1
    assert outbox.log_ack(1, 1, 11) == 0
    assert outbox.log_ack(1, 1, 12) == 1
    assert [p.data["attempt"] for p in outbox.pending()] == [2]


def test_a_newer_usage_report_supersedes_older_unacknowledged_ones():
    outbox = Outbox()
    outbox.add("job.usage", _usage(1))
    outbox.add("job.usage", _usage(1, job_id=2))
    outbox.add("job.usage", _usage(2))

    assert [(p.data["job_id"], p.data["seq"]) for p in outbox.pending()] == [(2, 1), (1, 2)]
    assert outbox.usage_ack(1, 1, 2) == 1
    assert len(outbox) == 1


def test_an_error_is_final_unless_the_server_failed():
    outbox = Outbox()
    entry = outbox.add("job.finished", {"job_id": 1})

    assert outbox.refuse(entry.id, "internal_error") is None
    assert len(outbox) == 1
    assert outbox.refuse(entry.id, "stale_attempt") == entry
    assert len(outbox) == 0
