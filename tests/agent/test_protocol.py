import json
import typing

import pytest

from agent import protocol
from agent.protocol import AGENT_MESSAGES, SERVER_MESSAGES, ProtocolError, decode, encode


def _usage(**overrides):
    usage = {
        "job_id": 1,
        "attempt": 1,
        "seq": 3,
        "cpu_seconds": 1.5,
        "wall_seconds": 2,
        "memory_peak_mb": 10,
        "memory_current_mb": 8,
        "gpu_seconds": 0.0,
    }
    usage.update(overrides)
    return usage


def test_round_trip_of_a_valid_message():
    raw = encode("job.usage", _usage())
    envelope = decode(raw, AGENT_MESSAGES)
    assert envelope["type"] == "job.usage"
    assert envelope["data"] == _usage()


def test_nested_typed_dicts_and_unions_are_checked():
    finished = {
        "job_id": 1,
        "attempt": 1,
        "status": "succeeded",
        "reason": "exit code 0",
        "exit_code": None,
        "outputs": [{"name": "a.txt", "size": 3, "sha256": "ab"}],
        "usage": _usage(is_final=True),
    }
    assert decode(encode("job.finished", finished), AGENT_MESSAGES)["data"] == finished
    finished["exit_code"] = "zero"
    with pytest.raises(ProtocolError) as excinfo:
        decode(encode("job.finished", finished), AGENT_MESSAGES)
    assert excinfo.value.code == "bad_field"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        ("[]", "bad_envelope"),
        (json.dumps({"type": "job.offer", "id": "x", "data": {}}), "unknown_type"),
        (json.dumps({"type": "job.usage", "id": "", "data": _usage()}), "bad_envelope"),
        (json.dumps({"type": "job.usage", "id": "x", "data": _usage(seq="1")}), "bad_field"),
        (json.dumps({"type": "job.usage", "id": "x", "data": _usage(seq=True)}), "bad_field"),
        (json.dumps({"type": "job.accept", "id": "x", "data": {"job_id": 1}}), "missing_field"),
        (
            json.dumps(
                {
                    "type": "job.started",
                    "id": "x",
                    "data": {"job_id": 1, "attempt": 1, "phase": "x"},
                }
            ),
            "bad_field",
        ),
    ],
)
def test_malformed_messages_are_refused_with_a_code(raw, code):
    with pytest.raises(ProtocolError) as excinfo:
        decode(raw, AGENT_MESSAGES)
    assert excinfo.value.code == code


def test_oversized_message_is_refused_before_parsing():
    raw = "x" * (protocol.MAX_MESSAGE_BYTES + 1)
    with pytest.raises(ProtocolError) as excinfo:
        decode(raw, AGENT_MESSAGES)
    assert excinfo.value.code == "too_large"


def test_server_messages_are_not_accepted_from_agents():
    with pytest.raises(ProtocolError):
        decode(encode("drain", {"is_draining": True}), AGENT_MESSAGES)
    assert decode(encode("drain", {"is_draining": True}), SERVER_MESSAGES)["type"] == "drain"


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"cpu_seconds": 1e300}, "data.cpu_seconds"),
        ({"seq": 2**63}, "data.seq"),
        ({"job_id": -(2**63) - 1}, "data.job_id"),
        ({"memory_peak_mb": 2**40}, "data.memory_peak_mb"),
        ({"seq": -1}, "data.seq"),
        ({"gpu_seconds": -0.5}, "data.gpu_seconds"),
        ({"wall_seconds": float("nan")}, "data.wall_seconds"),
        ({"cpu_seconds": float("-inf")}, "data.cpu_seconds"),
        ({"wall_seconds": 2**64}, "data.wall_seconds"),
        ({"seq": True}, "data.seq"),
        ({"cpu_seconds": False}, "data.cpu_seconds"),
    ],
)
def test_numbers_out_of_bounds_are_bad_fields(overrides, where):
    with pytest.raises(ProtocolError) as caught:
        decode(encode("job.usage", _usage(**overrides)), AGENT_MESSAGES)
    assert caught.value.code == "bad_field"
    assert caught.value.message.startswith(where)


def test_the_bounds_themselves_are_accepted():
    top = _usage(
        seq=protocol.INT64_MAX,
        cpu_seconds=protocol.MAX_SECONDS,
        memory_peak_mb=protocol.MAX_MEMORY_MB,
        memory_current_mb=0,
    )
    assert decode(encode("job.usage", top), AGENT_MESSAGES)["data"] == top


def test_a_bare_nan_literal_is_refused():
    raw = '{"type":"job.usage","id":"u","data":' + json.dumps(_usage())[:-1] + ',"load":NaN}}'
    heartbeat = (
        '{"type":"heartbeat","id":"h","data":{"load":NaN,"is_available":true,'
        '"unavailable_reason":"","running_jobs":[]}}'
    )
    assert decode(raw, AGENT_MESSAGES)["type"] == "job.usage"  # an unknown field is ignored
    with pytest.raises(ProtocolError) as caught:
        decode(heartbeat, AGENT_MESSAGES)
    assert (caught.value.code, caught.value.message) == ("bad_field", "data.load must be finite")


def _heartbeat(**overrides):
    beat = {"load": 0.1, "is_available": True, "unavailable_reason": "", "running_jobs": []}
    beat.update(overrides)
    return beat


def _readiness(reason=""):
    return {"ready": not reason, "reason": reason, "isolation": "docker"}


@pytest.mark.parametrize(
    ("message_type", "data", "where"),
    [
        ("heartbeat", _heartbeat(slots=0), "data.slots"),
        ("heartbeat", _heartbeat(slots=protocol.MAX_SLOTS + 1), "data.slots"),
        ("heartbeat", _heartbeat(readiness=_readiness("x" * 2001)), "data.readiness.reason"),
        ("heartbeat", _heartbeat(readiness={**_readiness(), "isolation": "vm"}), "data.readiness"),
        ("job.reject", {"job_id": 1, "attempt": 1, "reason": "no", "code": "later"}, "data.code"),
        ("job.reject", {"job_id": 1, "attempt": 1, "reason": "no", "code": 1}, "data.code"),
    ],
)
def test_scheduling_fields_out_of_bounds_are_bad_fields(message_type, data, where):
    with pytest.raises(ProtocolError) as caught:
        decode(encode(message_type, data), AGENT_MESSAGES)
    assert caught.value.code == "bad_field"
    assert caught.value.message.startswith(where)


def test_a_string_length_bound_counts_characters_and_admits_its_ends():
    reason = "é" * protocol.MAX_REASON_CHARS  # 2 bytes each in UTF-8: the bound is characters
    beat = _heartbeat(slots=protocol.MAX_SLOTS, readiness=_readiness(reason))
    assert decode(encode("heartbeat", beat), AGENT_MESSAGES)["data"] == beat
    with pytest.raises(ProtocolError, match="must be 8 to 64 characters long"):
        protocol.payload_check(protocol.InstallId, "short")


def test_a_negative_log_offset_is_refused():
    log = {"job_id": 1, "attempt": 1, "offset": -1, "data": "x"}
    with pytest.raises(ProtocolError, match=r"data\.offset"):
        decode(encode("job.log", log), AGENT_MESSAGES)


def test_checkers_are_built_once_not_per_message(monkeypatch):
    decode(encode("job.usage", _usage()), AGENT_MESSAGES)

    def refuse(*args, **kwargs):
        raise AssertionError("type hints recomputed for a message")

    monkeypatch.setattr(protocol, "get_type_hints", refuse)
    assert decode(encode("job.usage", _usage(seq=4)), AGENT_MESSAGES)["data"]["seq"] == 4


def test_decode_introspects_each_message_type_once_not_per_message(monkeypatch):
    # given: the heartbeat's checkers exist (built by the first decode)
    from bench.protocol import MESSAGES

    raw = json.dumps({"type": "heartbeat", "id": "h1", "data": MESSAGES["heartbeat"]})
    protocol.decode(raw, AGENT_MESSAGES)
    calls = []
    real = typing.get_type_hints

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(protocol, "get_type_hints", counted)

    # when: a hundred more heartbeats arrive
    for _ in range(100):
        protocol.decode(raw, AGENT_MESSAGES)

    # then: no type introspection per message
    assert calls == []
