from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.metering import (
    Counters,
    ImpossibleReport,
    Rates,
    Reservation,
    charge_decide,
    check_physical,
    cost_per_second_max,
    cost_total,
    counters_from_report,
    seconds_to_ms,
    seconds_until_cap,
)

RATES = Rates(cpu_core_hour_micros=360_000, memory_gb_hour_micros=36_000, gpu_hour_micros=0)
TWO_CORES_1GB = Reservation(cpus=Decimal(2), memory_mb=1024, gpus=0)


def test_one_core_hour_and_one_gb_hour_cost_their_rates():
    # given one hour of wall time with one core busy, 1 GB reserved
    counters = Counters(cpu_ms=3_600_000, wall_ms=3_600_000)
    # then
    assert cost_total(counters, RATES, TWO_CORES_1GB) == 360_000 + 36_000


def test_gpu_is_billed_per_reserved_gpu_hour_of_wall_time():
    rates = Rates(cpu_core_hour_micros=0, memory_gb_hour_micros=0, gpu_hour_micros=1_800_000)
    reservation = Reservation(cpus=Decimal(1), memory_mb=0, gpus=2)
    assert cost_total(Counters(cpu_ms=0, wall_ms=1_000), rates, reservation) == 1_000


def test_seconds_convert_exactly_without_float_drift():
    assert seconds_to_ms(0.1) == 100
    assert seconds_to_ms(1.0005) == 1000
    assert seconds_to_ms(3) == 3000
    assert counters_from_report(1.25, 2) == Counters(cpu_ms=1250, wall_ms=2000)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "x"])
def test_bad_counters_are_refused(bad):
    with pytest.raises(ImpossibleReport):
        seconds_to_ms(bad)


def test_cpu_beyond_wall_times_cores_is_impossible():
    # given 10 s of wall time on 2 cores: 20 s of CPU plus tolerance is the most
    check_physical(Counters(cpu_ms=20_000, wall_ms=10_000), TWO_CORES_1GB, 10_000)
    # then
    with pytest.raises(ImpossibleReport) as excinfo:
        check_physical(Counters(cpu_ms=22_000, wall_ms=10_000), TWO_CORES_1GB, 10_000)
    assert excinfo.value.code == "cpu_exceeds_wall"


def test_wall_time_ahead_of_the_server_is_impossible():
    check_physical(Counters(cpu_ms=0, wall_ms=14_000), TWO_CORES_1GB, 10_000)
    with pytest.raises(ImpossibleReport) as excinfo:
        check_physical(Counters(cpu_ms=0, wall_ms=16_000), TWO_CORES_1GB, 10_000)
    assert excinfo.value.code == "wall_ahead_of_server"


def test_replayed_counters_charge_nothing():
    counters = Counters(cpu_ms=5_000, wall_ms=5_000)
    first = charge_decide(
        counters=counters,
        rates=RATES,
        reservation=TWO_CORES_1GB,
        charged_micros=0,
        cap_remaining_micros=10**9,
    )
    again = charge_decide(
        counters=counters,
        rates=RATES,
        reservation=TWO_CORES_1GB,
        charged_micros=first.total_micros,
        cap_remaining_micros=10**9 - first.total_micros,
    )
    assert first.charge_micros == 550
    assert again.charge_micros == 0
    assert again.total_micros == first.total_micros


def test_the_cap_clamps_the_total_and_stops_the_job():
    decision = charge_decide(
        counters=Counters(cpu_ms=3_600_000, wall_ms=3_600_000),
        rates=RATES,
        reservation=TWO_CORES_1GB,
        charged_micros=100,
        cap_remaining_micros=1_000,
    )
    assert decision.total_micros == 1_100
    assert decision.charge_micros == 1_000
    assert decision.stop is True


def test_stop_when_the_next_second_would_pass_the_cap():
    per_second = cost_per_second_max(RATES, TWO_CORES_1GB)
    assert per_second == 210  # 2 cores x 100 + 10 for 1 GB, per second
    # given 5 s at full use = 1050 charged and 1100 allowed in total
    decision = charge_decide(
        counters=Counters(cpu_ms=10_000, wall_ms=5_000),
        rates=RATES,
        reservation=TWO_CORES_1GB,
        charged_micros=0,
        cap_remaining_micros=1_100,
    )
    assert decision.total_micros == 1_050
    assert decision.stop is True


def test_seconds_until_cap_is_the_agents_local_deadline():
    assert (
        seconds_until_cap(rates=RATES, reservation=TWO_CORES_1GB, cap_remaining_micros=2_100) == 10
    )
    free = Rates(0, 0, 0)
    assert seconds_until_cap(rates=free, reservation=TWO_CORES_1GB, cap_remaining_micros=0) > 0


counter_steps = st.lists(
    st.tuples(st.integers(0, 5_000), st.integers(0, 5_000)), min_size=1, max_size=30
)


@given(steps=counter_steps, cap=st.integers(0, 50_000), replay=st.permutations(range(30)))
def test_charges_sum_to_the_capped_floor_of_the_final_total(steps, cap, replay):
    # given a monotonic stream of cumulative counters, delivered in an arbitrary order with
    # every report delivered twice
    stream, cpu, wall = [], 0, 0
    for cpu_step, wall_step in steps:
        cpu, wall = cpu + cpu_step, wall + wall_step
        stream.append(Counters(cpu_ms=min(cpu, 2 * wall), wall_ms=wall))
    order = [i for i in replay if i < len(stream)]
    deliveries = [stream[i] for i in order] + stream
    # when the server keeps the furthest counters it has seen and charges the difference
    charged, latest = 0, Counters(0, 0)
    for counters in deliveries:
        if not counters.covers(latest):
            continue
        latest = counters
        decision = charge_decide(
            counters=counters,
            rates=RATES,
            reservation=TWO_CORES_1GB,
            charged_micros=charged,
            cap_remaining_micros=cap - charged,
        )
        assert decision.charge_micros >= 0
        charged += decision.charge_micros
    # then
    assert charged == min(cost_total(stream[-1], RATES, TWO_CORES_1GB), cap)
