import json

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
