"""Logs: byte offsets, idempotent storage, contiguous acks, the kept tail, reading them back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from config.errors import Conflict
from jobs.models import JobLogChunk
from jobs.services.logs import truncation_notice
from tests.jobs.conftest import Wire
from tests.jobs.helpers import finished, say, submit


@pytest.fixture
def running(alice, make_host, hana, ledger, committed):
    ledger.fund(alice, 5_000_000)
    host = make_host(hana)
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
    return job, host


def log(host, job, offset, data, attempt=1):
    [(kind, ack)] = say(host, "job.log", job_id=job.pk, attempt=attempt, offset=offset, data=data)
    assert kind == "log.ack"
    return ack["offset"]


def stored(job) -> bytes:
    chunks = JobLogChunk.objects.filter(attempt__job=job).order_by("offset")
    return b"".join(bytes(c.data) for c in chunks)


def test_chunks_in_order_are_stored_and_acked(running, committed):
    job, host = running
    with committed():
        acks = [log(host, job, 0, "hello "), log(host, job, 6, "wörld\n")]
    assert acks == [6, 13]
    assert stored(job) == "hello wörld\n".encode()


def test_a_resent_chunk_is_stored_once(running, committed):
    job, host = running
    with committed():
        acks = [log(host, job, 0, "abc"), log(host, job, 0, "abc"), log(host, job, 0, "ab")]
    assert acks == [3, 3, 3]
    assert stored(job) == b"abc"
    assert JobLogChunk.objects.count() == 1


def test_an_overlapping_chunk_adds_only_its_new_bytes(running, committed):
    job, host = running
    with committed():
        acks = [log(host, job, 0, "abcde"), log(host, job, 3, "defgh")]
    assert acks == [5, 8]
    assert stored(job) == b"abcdefgh"


def test_a_gap_is_not_filled_by_later_data(running, committed):
    job, host = running
    with committed():
        first = log(host, job, 0, "0123456789")
        past_gap = log(host, job, 20, "KLMNO")
        filled = log(host, job, 10, "abcdefghij")
        resent = log(host, job, 20, "KLMNO")
    assert (first, past_gap, filled, resent) == (10, 10, 20, 25)
    assert stored(job) == b"0123456789abcdefghijKLMNO"


def test_the_stored_log_keeps_its_head_and_tail_with_a_marker_between(
    running, committed, client_for, alice, settings
):
    # given a cap of 10 bytes: the first 5 and the last 5 are kept
    settings.JOB_LOG_MAX_BYTES = 10
    settings.JOB_LOG_HEAD_BYTES = 1024
    job, host = running

    # when: 25 bytes in three chunks
    with committed():
        log(host, job, 0, "0123456789")
        log(host, job, 10, "abcdefghij")
        log(host, job, 20, "KLMNO")
    client = client_for(alice)
    whole = client.get(f"/api/v1/jobs/{job.pk}/logs/?offset=0")
    in_the_gap = client.get(f"/api/v1/jobs/{job.pk}/logs/?offset=7").data
    in_the_head = client.get(f"/api/v1/jobs/{job.pk}/logs/?offset=3").data

    # then: bytes 0..5 and 20..25 kept, offsets unchanged, the marker names the 15 dropped
    assert stored(job) == b"01234KLMNO"
    assert whole.status_code == 200
    assert whole.data == {
        "job_id": job.pk,
        "attempt": 1,
        "offset": 0,
        "next_offset": 25,
        "data": "01234" + truncation_notice(15) + "KLMNO",
        "truncated": True,
        "is_complete": False,
    }
    assert truncation_notice(15) == (
        "[communipute: 15 bytes of this log were dropped here; "
        "the server keeps the first 5 and the last 5 bytes]\n"
    )
    assert (in_the_gap["offset"], in_the_gap["data"]) == (20, truncation_notice(15) + "KLMNO")
    assert (in_the_head["offset"], in_the_head["data"]) == (
        3,
        "34" + truncation_notice(15) + "KLMNO",
    )


def test_a_chatty_log_keeps_its_first_bytes_as_it_grows(running, committed, settings):
    # given
    settings.JOB_LOG_MAX_BYTES = 8
    settings.JOB_LOG_HEAD_BYTES = 3
    job, host = running

    # when: one byte at a time, then a chunk that spans head, gap and tail at once
    with committed():
        for n, char in enumerate("abcdefghij"):
            log(host, job, n, char)
        log(host, job, 10, "KLMNOPQRSTUV")

    # then
    assert stored(job) == b"abcRSTUV"
    attempt = job.attempts.get()
    assert (attempt.log_start, attempt.log_offset) == (17, 22)


def test_a_single_chunk_over_the_cap_is_cut_in_the_middle(running, committed, settings):
    settings.JOB_LOG_MAX_BYTES = 6
    settings.JOB_LOG_HEAD_BYTES = 2
    job, host = running

    with committed():
        log(host, job, 0, "0123456789")

    assert stored(job) == b"016789"


def test_a_log_under_the_cap_is_whole(running, committed, client_for, alice, settings):
    settings.JOB_LOG_MAX_BYTES = 1024
    job, host = running
    with committed():
        log(host, job, 0, "x" * 1024)

    page = client_for(alice).get(f"/api/v1/jobs/{job.pk}/logs/?offset=0").data

    assert (page["data"], page["truncated"]) == ("x" * 1024, False)


def test_reading_from_an_offset_and_following_to_the_end(running, committed, client_for, alice):
    # given
    job, host = running
    with committed():
        log(host, job, 0, "line 1\n")
        log(host, job, 7, "line 2\n")
    client = client_for(alice)

    # when
    middle = client.get(f"/api/v1/jobs/{job.pk}/logs/?offset=3").data
    with committed():
        say(host, "job.finished", **finished(job, 1, log_bytes=14))
    end = client.get(f"/api/v1/jobs/{job.pk}/logs/?offset={middle['next_offset']}").data

    # then
    assert (middle["offset"], middle["next_offset"], middle["data"]) == (3, 14, "e 1\nline 2\n")
    assert (middle["truncated"], middle["is_complete"]) == (False, False)
    assert (end["offset"], end["next_offset"], end["data"], end["is_complete"]) == (
        14,
        14,
        "",
        True,
    )


def test_log_chunks_are_pushed_to_the_owner_socket(running, committed, wire: Wire):
    job, host = running
    with committed():
        log(host, job, 0, "hi\n")
    [event] = [e for _, e in wire.events if e["type"] == "job.log"]
    assert event == {
        "type": "job.log",
        "job_id": job.pk,
        "attempt": 1,
        "offset": 0,
        "next_offset": 3,
        "data": "hi\n",
    }


def test_the_tail_of_the_log_may_arrive_after_finished(running, committed):
    job, host = running
    with committed():
        say(host, "job.finished", **finished(job, 1))
        ack = log(host, job, 0, "last words\n")
    assert ack == 11


def test_a_bad_offset_query_is_a_400(running, client_for, alice):
    job, _ = running
    response = client_for(alice).get(f"/api/v1/jobs/{job.pk}/logs/?offset=-1")
    assert (response.status_code, response.data["error"]["code"]) == (400, "invalid")


def test_a_log_chunk_costs_a_fixed_number_of_queries(running, committed, django_assert_num_queries):
    job, host = running
    with committed():
        log(host, job, 0, "warm\n")
    # attempt + job read, savepoint, lock, insert, update, release
    with django_assert_num_queries(6), committed():
        log(host, job, 5, "x" * 1000)


def test_a_log_chunk_after_the_window_is_refused_and_stores_nothing(running, committed, settings):
    # given the attempt finished just over JOB_LATE_UPLOAD_SECONDS ago
    settings.JOB_LATE_UPLOAD_SECONDS = 60
    job, host = running
    with committed():
        log(host, job, 0, "before\n")
        say(host, "job.finished", **finished(job, 1))
    attempt = job.attempts.get(number=1)
    attempt.finished_at = timezone.now() - timedelta(seconds=61)
    attempt.save(update_fields=["finished_at"])

    # when / then
    with committed(), pytest.raises(Conflict) as refused:
        log(host, job, 7, "appended later\n")
    assert refused.value.code == "upload_window_closed"
    assert stored(job) == b"before\n"
    attempt.refresh_from_db()
    assert attempt.log_offset == 7


def test_a_log_chunk_inside_the_window_is_taken(running, committed, settings):
    settings.JOB_LATE_UPLOAD_SECONDS = 60
    job, host = running
    with committed():
        say(host, "job.finished", **finished(job, 1))
    attempt = job.attempts.get(number=1)
    attempt.finished_at = timezone.now() - timedelta(seconds=59)
    attempt.save(update_fields=["finished_at"])

    with committed():
        ack = log(host, job, 0, "last words\n")

    assert ack == 11


def test_a_log_is_complete_only_once_the_declared_tail_arrived(
    running, committed, client_for, alice
):
    # given: the agent says job.finished (14 bytes of log in all) before its last chunk landed
    job, host = running
    with committed():
        log(host, job, 0, "line 1\n")
        say(host, "job.finished", **finished(job, 1, log_bytes=14))
    client = client_for(alice)

    # when
    early = client.get(f"/api/v1/jobs/{job.pk}/logs/?offset=0").data
    with committed():
        log(host, job, 7, "line 2\n")
    late = client.get(f"/api/v1/jobs/{job.pk}/logs/?offset=0").data

    # then: read to the stored end both times, complete only with the whole log
    assert (early["next_offset"], early["is_complete"]) == (7, False)
    assert (late["next_offset"], late["data"], late["is_complete"]) == (
        14,
        "line 1\nline 2\n",
        True,
    )


def test_an_undeclared_or_missing_tail_is_complete_when_the_window_closes(
    running, committed, client_for, alice, settings
):
    # given: an agent that declared no length, and then one whose tail never came
    settings.JOB_LATE_UPLOAD_SECONDS = 60
    job, host = running
    with committed():
        log(host, job, 0, "partial\n")
        say(host, "job.finished", **finished(job, 1, log_bytes=1_000))
    client = client_for(alice)
    attempt = job.attempts.get(number=1)

    # when
    inside = client.get(f"/api/v1/jobs/{job.pk}/logs/").data
    attempt.finished_at = timezone.now() - timedelta(seconds=61)
    attempt.save(update_fields=["finished_at"])
    after = client.get(f"/api/v1/jobs/{job.pk}/logs/").data

    # then: nothing more can arrive once the window closed
    assert (inside["is_complete"], after["is_complete"]) == (False, True)
