"""The disk a host reports in its specs (issue 13): bounds, and what an older agent gets."""

from __future__ import annotations

from typing import Any

import pytest

from agent.protocol import PROTOCOL_VERSION
from config.errors import ValidationFailed
from hosts import services
from hosts.specs import MAX_DISK_MB, specs_clean
from tests.hosts.factories import credential_create, host_create, specs


def test_disk_quota_and_job_disk_mb_pass_through_the_checks():
    cleaned = specs_clean(specs(disk_quota=True, job_disk_mb=40_000))

    assert (cleaned["disk_quota"], cleaned["job_disk_mb"]) == (True, 40_000)


def test_an_older_agents_specs_stay_without_them():
    cleaned = specs_clean(specs())

    assert "disk_quota" not in cleaned
    assert "job_disk_mb" not in cleaned


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"job_disk_mb": MAX_DISK_MB + 1}, "job_disk_mb"),
        ({"job_disk_mb": -1}, "specs.job_disk_mb"),
        ({"job_disk_mb": "lots"}, "specs.job_disk_mb"),
        ({"disk_quota": "yes"}, "specs.disk_quota"),
    ],
)
def test_impossible_disk_specs_are_refused(overrides, field):
    with pytest.raises(ValidationFailed) as refused:
        specs_clean(specs(**overrides))

    assert refused.value.code == "invalid_specs"
    assert field in refused.value.message or field in refused.value.fields


def _hello(reported: dict[str, Any]) -> Any:
    return {
        "agent_version": "0.2.0",
        "protocol_version": PROTOCOL_VERSION,
        "specs": reported,
        "running_jobs": [],
        "is_available": True,
        "is_draining": False,
    }


@pytest.mark.django_db
def test_a_hello_without_disk_specs_clears_what_an_earlier_agent_said(hana):
    # given: the host's agent said it enforces quotas, then a downgraded one says hello
    host = host_create(hana, disk_quota=True, job_disk_mb=40_000)
    credential_create(host)

    # when
    services.host_hello(host_id=host.pk, connection_id="conn-1", hello=_hello(specs()))

    # then
    host.refresh_from_db()
    assert (host.disk_quota, host.job_disk_mb) == (False, None)
