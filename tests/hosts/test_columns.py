"""The rates are one value, named once: the columns, the API and the wire agree on the names,
and every copy goes through ``set_rates`` / ``rates_columns``."""

import pytest

from agent.metering import Rates
from agent.protocol import JobRates
from hosts.models import RATE_FIELDS, Host, rates_columns
from hosts.serializers import LISTING_FIELDS, HostUpdateInput
from hosts.services import HostChanges
from jobs.models import Job, JobAttempt
from marketplace.quote_apis import RatesSerializer

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
