"""The job runner's pure parts: log chunking and offsets, the local cap, the offer's spec,
and the factories (the tus output uploader: tests/agent/test_uploads_tus.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from agent import jobrunner
from agent.config import AgentConfig, ConfigError, config_load
from agent.job_manager_protocol import RejectingJobManager, job_manager_build
from agent.jobrunner.logs import JSON_CHUNK_MAX_CHARS, LogOutbound, text_split
from agent.jobrunner.offer import CostCap, cap_from_offer, spec_from_offer
from agent.jobrunner.runtime_manager import RuntimeJobManager
from agent.jobrunner.threads import in_daemon_thread
from agent.jobrunner.usage import UsageMeter
from agent.metering import Rates, Reservation, seconds_until_cap
from agent.protocol import MAX_MESSAGE_BYTES, encode
from agent.runtime.types import JobSpec, JobSpecError, UsageSample
from tests.agent.jobrunner_fakes import FakeLink, offer

# --- logs ---------------------------------------------------------------------------------


def test_text_split_never_cuts_a_character_and_keeps_every_byte():
    data = "aé€😀b".encode() * 50

    pieces = text_split(data, 5)

    assert "".join(pieces).encode() == data
    assert all(len(piece.encode()) <= 5 for piece in pieces)


def test_a_chunk_of_control_characters_still_fits_one_message():
    # given 64 KiB of NUL bytes: six bytes each once escaped as JSON
    data = b"\x00" * 65536

    # when
    pieces = text_split(data, 65536)

    # then
    assert "".join(pieces).encode() == data
    for piece in pieces:
        message = encode("job.log", {"job_id": 1, "attempt": 1, "offset": 0, "data": piece})
        assert len(message) < MAX_MESSAGE_BYTES
        assert len(json.dumps(piece)) <= JSON_CHUNK_MAX_CHARS


def test_chunks_wait_for_a_full_chunk_unless_flushed():
    # given
    log = LogOutbound(chunk_bytes=4, window_bytes=100)
    log.feed(b"abcdef")

    # when / then
    assert log.take_ready(flush=False) == [(0, "abcd")]
    assert log.take_ready(flush=False) == []
    assert log.take_ready(flush=True) == [(4, "ef")]
    assert (log.sent_end, log.acked, log.in_flight) == (6, 0, 6)


def test_the_window_holds_chunks_back_until_acknowledged():
    # given
    log = LogOutbound(chunk_bytes=2, window_bytes=4)
    log.feed(b"aabbccdd")

    # when / then
    assert log.take_ready(flush=True) == [(0, "aa"), (2, "bb")]
    assert log.is_blocked(flush=True) is True
    assert log.ack(2) is True
    assert log.take_ready(flush=True) == [(4, "cc")]
    assert log.ack(2) is False  # not news
    assert log.unacknowledged() == [(2, "bb"), (4, "cc")]


def test_after_a_restart_one_probe_goes_out_and_what_the_server_holds_is_skipped():
    # given a re-attached attempt reading its log again from the start
    log = LogOutbound(chunk_bytes=3, window_bytes=100, probing=True)
    log.feed(b"0123456789")

    # when
    probe = log.take_ready(flush=True)

    # then: one chunk, then nothing until the server answers
    assert probe == [(0, "012")]
    assert log.take_ready(flush=True) == []

    # when the server says it holds 8 bytes
    log.ack(8)

    # then
    assert log.take_ready(flush=True) == [(8, "89")]


def test_re_reading_bad_utf8_in_other_pieces_gives_the_same_text_and_offsets():
    raw = b"caf\xc3\xa9 \xff\xfe end \xe2\x82"

    whole = LogOutbound(chunk_bytes=1000)
    whole.feed(raw)
    whole.feed_end()
    bytewise = LogOutbound(chunk_bytes=1000)
    for index in range(len(raw)):
        bytewise.feed(raw[index : index + 1])
    bytewise.feed_end()

    assert whole.take_ready(flush=True) == bytewise.take_ready(flush=True)
    assert whole.produced == bytewise.produced


# --- usage and the cap --------------------------------------------------------------------


def test_wall_time_stops_at_how_long_the_run_took_once_it_ended():
    # given: a run reported at 4 s of wall time, then found to have ended after 6 s
    meter = UsageMeter(job_id=1, attempt=2, gpus=0, started_at=100.0)
    meter.observe(UsageSample(1.0, 10, 10), now=104.0)
    assert meter.report()["wall_seconds"] == 4.0

    # when: samples long after the end say how long it ran
    meter.observe(UsageSample(5.5, 0, 10, wall_seconds=6.0), now=130.0)

    # then: 6 s, not the 30 s since the start
    assert meter.report(is_final=True)["wall_seconds"] == 6.0


def test_wall_time_never_goes_below_what_was_reported():
    # given: a report of 30 s (an agent's clock), then the engine's record of a 29.9 s run
    meter = UsageMeter(job_id=1, attempt=2, gpus=1, started_at=100.0)
    meter.observe(UsageSample(1.0, 10, 10), now=130.0)
    assert meter.report()["wall_seconds"] == 30.0

    # when
    meter.observe(UsageSample(1.0, 0, 10, wall_seconds=29.9), now=131.0)

    # then: the server would refuse counters going backwards
    final = meter.report(is_final=True)
    assert (final["wall_seconds"], final["gpu_seconds"]) == (30.0, 30.0)


def test_usage_floors_to_milliseconds_and_tracks_the_peak():
    meter = UsageMeter(job_id=1, attempt=2, gpus=1, started_at=100.0)

    meter.observe(UsageSample(0.12345, 50, 0), now=101.0004)
    meter.observe(UsageSample(0.2, 10, 40), now=102.5)
    report = meter.report()

    assert report == {
        "job_id": 1,
        "attempt": 2,
        "seq": 1,
        "cpu_seconds": 0.2,
        "wall_seconds": 2.5,
        "memory_peak_mb": 50,
        "memory_current_mb": 10,
        "gpu_seconds": 2.5,
    }


def test_the_local_cap_agrees_with_seconds_until_cap_at_full_use():
    # given
    cap = cap_from_offer(
        offer(
            max_cost_micros=1_000_000,
            charged_micros=100_000,
            rates={
                "cpu_core_hour_micros": 360_000,
                "memory_gb_hour_micros": 36_000,
                "gpu_hour_micros": 0,
            },
        )
    )
    seconds = seconds_until_cap(
        rates=Rates(360_000, 36_000, 0),
        reservation=Reservation(cpus=Decimal(1), memory_mb=512, gpus=0),
        cap_remaining_micros=900_000,
    )

    # then: with the core busy all the time it stops exactly there
    assert cap.seconds_at_full_use == seconds
    assert cap.is_reached(seconds - 1, seconds - 1) is False
    assert cap.is_reached(seconds, seconds) is True
    # an idle core costs less: the same wall time is still within the cap
    assert cap.is_reached(0, seconds) is False


def test_the_cap_survives_json():
    cap = cap_from_offer(offer(limits={**offer()["limits"], "cpus": 1.5}))

    assert CostCap.from_json(json.loads(json.dumps(cap.to_json()))) == cap
    assert cap.reservation.cpus == Decimal("1.5")


# --- the offer ----------------------------------------------------------------------------


def test_an_offer_becomes_a_job_spec():
    given = offer(
        files=[
            {"path": "main.py", "content_b64": base64.b64encode(b"import lib").decode()},
            {"path": "pkg/lib.py", "content_b64": base64.b64encode(b"\x00\xff").decode()},
        ],
        requirements=["requests==2.32.3"],
    )
    given["limits"].update(cpus=2.0, memory_mb=1024, gpus=1, timeout_seconds=60)

    spec = spec_from_offer(given)

    assert spec == JobSpec(
        job_id=7,
        attempt=1,
        files={"main.py": b"import lib", "pkg/lib.py": b"\x00\xff"},
        entrypoint="main.py",
        requirements=("requests==2.32.3",),
        cpus=2.0,
        memory_mb=1024,
        gpus=1,
        timeout_seconds=60,
        network_allowed=False,
    )


def test_a_file_named_twice_is_refused():
    content = base64.b64encode(b"x").decode()
    files = [{"path": "main.py", "content_b64": content}] * 2

    with pytest.raises(JobSpecError, match="appears twice"):
        spec_from_offer(offer(files=files))


# --- factories ----------------------------------------------------------------------------


def _config(tmp_path: Path, **overrides: object) -> AgentConfig:
    values = {"server": "http://127.0.0.1:1", "host_id": 42, "credential": "cph_x", **overrides}
    return config_load(tmp_path / "agent.json", env={}, overrides=values)


def test_runtime_settings_come_from_the_config(tmp_path):
    cert = tmp_path / "ca.pem"
    cert.write_text("x")
    config = _config(
        tmp_path,
        work_dir=str(tmp_path / "w"),
        runner_image="img:1",
        pip_index_url="https://pypi.example/simple",
        pip_cert=str(cert),
        allow_network=True,
        install_id="inst-0123456789",
    )

    settings = jobrunner.runtime_settings_from_config(config)

    assert settings.work_root == tmp_path / "w"
    assert settings.image == "img:1"
    assert settings.agent_marker == "42"
    assert settings.install_id == "inst-0123456789"
    assert settings.server_id == config.server_id != ""
    assert settings.pip_index_url == "https://pypi.example/simple"
    assert settings.pip_extra_index_url is None
    assert settings.pip_cert_path == cert
    assert settings.network_allowed is True


def test_the_capacity_is_the_slots_and_the_whole_machine(tmp_path, monkeypatch):
    monkeypatch.setattr("agent.specs.docker_available", lambda: False)

    capacity = jobrunner.capacity_from_config(_config(tmp_path, slots=3))

    assert capacity.slots == 3
    assert capacity.cpus >= 1
    assert capacity.memory_mb >= 16
    assert capacity.gpus >= 0


def test_the_default_job_manager_is_auto(tmp_path):
    assert _config(tmp_path).job_manager == "auto"


def test_the_process_job_manager_needs_allow_unisolated(tmp_path):
    with pytest.raises(ConfigError, match="isolates nothing"):
        job_manager_build(_config(tmp_path, job_manager="process"))

    manager = job_manager_build(
        config_load(
            tmp_path / "agent.json",
            env={"COMMUNIPUTE_ALLOW_UNISOLATED": "1", "COMMUNIPUTE_JOB_MANAGER": "process"},
            overrides={"host_id": 1, "server": "http://127.0.0.1:1"},
        )
    )
    assert type(manager).__name__ == "RuntimeJobManager"


async def test_without_docker_auto_is_not_ready_until_the_engine_answers(
    tmp_path, monkeypatch, caplog
):
    # given an engine that does not answer (the agent started before dockerd)
    from types import SimpleNamespace

    from docker.errors import DockerException

    from agent.runtime.docker_later import DockerRuntimeLater

    def unreachable(*args, **kwargs):
        raise DockerException("Error while fetching server API version")

    monkeypatch.setattr("docker.from_env", unreachable)
    monkeypatch.setattr("agent.specs.docker_available", lambda: False)
    link = FakeLink()

    # when
    manager = job_manager_build(_config(tmp_path, work_dir=str(tmp_path / "work")))
    await manager.start(link)

    # then: not ready, and it says why; offers are the host's fault
    assert isinstance(manager, RuntimeJobManager)
    assert isinstance(manager.runtime, DockerRuntimeLater)
    readiness = manager.readiness()
    assert readiness["ready"] is False
    assert readiness["reason"].startswith("the Docker engine does not answer: Error while")
    await manager.on_offer(offer())
    assert link.of("job.reject")[0]["code"] == "host_fault"
    assert "taking no jobs until it does" in caplog.text
    with pytest.raises(ConfigError, match="Docker engine does not answer"):
        job_manager_build(_config(tmp_path, job_manager="docker"))

    # when the engine comes up
    engine = SimpleNamespace(
        ping=lambda: True,
        images=SimpleNamespace(get=lambda name: SimpleNamespace(id="sha256:runner")),
    )
    monkeypatch.setattr("docker.from_env", lambda *args, **kwargs: engine)
    await manager.readiness_refresh()

    # then it is ready without a restart
    assert manager.readiness() == {"ready": True, "reason": "", "isolation": "docker"}
    await manager.stop()


def test_none_turns_jobs_off(tmp_path):
    assert isinstance(job_manager_build(_config(tmp_path, job_manager="none")), RejectingJobManager)


# --- threads ------------------------------------------------------------------------------


async def test_blocking_calls_run_in_daemon_threads_and_raise_in_the_caller():
    seen = {}

    def work(value):
        seen["daemon"] = threading.current_thread().daemon
        return value * 2

    def fail():
        raise LookupError("gone")

    assert await in_daemon_thread(work, 21) == 42
    assert seen == {"daemon": True}
    with pytest.raises(LookupError, match="gone"):
        await in_daemon_thread(fail)


async def test_a_cancelled_wait_leaves_the_thread_alone():
    release = threading.Event()
    task = asyncio.create_task(in_daemon_thread(release.wait, 5))
    await asyncio.sleep(0.01)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await asyncio.sleep(0.01)  # the thread's late result lands nowhere, without an error
