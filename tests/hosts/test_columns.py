"""The rates and the specs are each one value, named once: the columns, the API and the wire
agree on the names, and every copy goes through ``set_rates`` / ``set_specs``."""

from typing import Any

import pytest

from agent.metering import Rates
from agent.protocol import PROTOCOL_VERSION, HostSpecs, JobRates
from hosts import services
from hosts.models import RATE_FIELDS, SPEC_FIELDS, Host, rates_columns
from hosts.serializers import LISTING_FIELDS, HostUpdateInput
from hosts.services import HostChanges
from jobs.models import Job, JobAttempt
from marketplace.quote_apis import RatesSerializer
from tests.hosts.factories import credential_create, host_create, online, specs
from tests.jobs.helpers import submit
from tests.jobs.real_ledger import RealLedger

RATES = Rates(cpu_core_hour_micros=30_000, memory_gb_hour_micros=4_000, gpu_hour_micros=900_000)


def test_every_shape_of_the_rates_names_the_same_three_fields():
    assert RATE_FIELDS == ("cpu_core_hour_micros", "memory_gb_hour_micros", "gpu_hour_micros")
    assert tuple(JobRates.__annotations__) == RATE_FIELDS
    assert tuple(RatesSerializer().fields) == RATE_FIELDS
    assert set(RATE_FIELDS) <= set(HostUpdateInput().fields)
    assert set(RATE_FIELDS) <= set(HostChanges.__annotations__)
    assert set(RATE_FIELDS) <= set(LISTING_FIELDS)


@pytest.mark.parametrize("model", [Host, Job, JobAttempt])
def test_rates_are_read_and_written_as_one_value(model):
    row = model()
    assert row.rates == Rates(0, 0, 0)

    row.set_rates(RATES)

    assert row.rates == RATES
    assert {name: getattr(row, name) for name in RATE_FIELDS} == rates_columns(RATES)
    assert rates_columns(RATES) == {
        "cpu_core_hour_micros": 30_000,
        "memory_gb_hour_micros": 4_000,
        "gpu_hour_micros": 900_000,
    }


@pytest.mark.django_db
def test_placement_copies_the_hosts_rates_and_a_later_change_leaves_them(
    alice, hana, monkeypatch, django_capture_on_commit_callbacks
):
    # given
    offers = []
    monkeypatch.setattr(
        "jobs.agent_link.agent_send", lambda host_id, kind, data: offers.append(data["rates"])
    )
    host = host_create(hana, **online())
    host.set_rates(RATES)
    host.save()
    RealLedger().fund(alice, 5_000_000)
    with django_capture_on_commit_callbacks(execute=True):
        job = submit(alice, host=host)

    # when
    services.host_update(
        owner=hana, host_id=host.pk, changes={"cpu_core_hour_micros": 1, "gpu_hour_micros": 2}
    )

    # then
    job.refresh_from_db()
    assert (job.rates, job.attempts.get().rates) == (RATES, RATES)
    assert offers == [rates_columns(RATES)]
    assert Host.objects.get(pk=host.pk).rates == Rates(1, RATES.memory_gb_hour_micros, 2)


def test_the_spec_columns_are_the_agents_specs_and_the_gpu_count():
    assert set(SPEC_FIELDS) == {*HostSpecs.__annotations__, "gpu_count"}
    assert set(SPEC_FIELDS) <= set(LISTING_FIELDS)


@pytest.mark.django_db
def test_hello_overwrites_every_spec_column_and_nothing_else(hana):
    # given
    host = host_create(hana, disk_free_mb=1, docker_available=False, **rates_columns(RATES))
    credential_create(host)
    reported = specs(
        cpu_model="  Apple M2 Max ",
        arch="aarch64",
        cpus=12,
        memory_mb=98_304,
        disk_free_mb=700_000,
        os="Darwin",
        os_version="14.4",
        gpus=[{"model": "Apple M2 Max", "memory_mb": 0}],
        docker_available=True,
        disk_quota=True,
        job_disk_mb=200_000,
    )
    hello: Any = {
        "agent_version": "0.2.0",
        "protocol_version": PROTOCOL_VERSION,
        "specs": reported,
        "running_jobs": [],
        "is_available": True,
        "is_draining": False,
    }

    # when
    services.host_hello(host_id=host.pk, connection_id="conn-1", hello=hello)

    # then
    host.refresh_from_db()
    assert {name: getattr(host, name) for name in SPEC_FIELDS} == {
        "cpu_model": "Apple M2 Max",
        "arch": "arm64",
        "cpus": 12,
        "memory_mb": 98_304,
        "disk_free_mb": 700_000,
        "os": "darwin",
        "os_version": "14.4",
        "gpus": [{"model": "Apple M2 Max", "memory_mb": 0}],
        "gpu_count": 1,
        "docker_available": True,
        "disk_quota": True,
        "job_disk_mb": 200_000,
    }
    assert (host.name, host.rates) == ("box", RATES)


def test_the_admin_shows_the_reported_specs_read_only(admin_client, hana):
    host = host_create(hana)

    page = admin_client.get(f"/admin/hosts/host/{host.pk}/change/").content.decode()

    assert 'name="cpu_core_hour_micros"' in page  # an editable field, for contrast
    for name in SPEC_FIELDS:
        assert f'name="{name}"' not in page
