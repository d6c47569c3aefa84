"""Placement: cost estimates, fit, and ranking (pure; no database)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from agent.metering import Rates
from marketplace.placement import (
    Candidate,
    JobSpec,
    cost_estimate_micros,
    disk_needed_mb,
    hosts_rank,
    minimum_cap_micros,
    misfit_reason,
    per_hour_micros,
    reliability,
)

SPEC = JobSpec(cpus=Decimal(2), memory_mb=1024, gpus=0, timeout_seconds=3600)
RATES = Rates(cpu_core_hour_micros=100_000, memory_gb_hour_micros=10_000, gpu_hour_micros=0)


def host(host_id=1, **overrides):
    values = {
        "host_id": host_id,
        "name": f"h{host_id}",
        "cpus": 8,
        "memory_mb": 16384,
        "gpu_count": 0,
        "max_job_cpus": 0,
        "max_job_memory_mb": 0,
        "max_job_gpus": 0,
        "max_job_timeout_seconds": 86400,
        "rates": RATES,
        "is_online": True,
        "is_available": True,
        "is_draining": False,
        "is_visible": True,
    }
    values.update(overrides)
    return Candidate(**values)


def test_per_hour_cost_adds_cpus_memory_and_gpus():
    # given
    spec = JobSpec(cpus=Decimal("1.5"), memory_mb=512, gpus=1, timeout_seconds=60)
    rates = Rates(100_000, 10_000, 1_000_000)

    # when / then: 150000 + 5000 + 1000000
    assert per_hour_micros(spec, rates) == 1_155_000


def test_estimates_round_up_once_on_the_total():
    # given: 1 cpu at 1 µcr/hour for one second is 1/3600 µcr
    spec = JobSpec(cpus=Decimal(1), memory_mb=0, gpus=0, timeout_seconds=1)
    rates = Rates(1, 0, 0)

    # when / then
    assert cost_estimate_micros(spec, rates, 1) == 1
    assert cost_estimate_micros(spec, rates, 3600) == 1
    assert cost_estimate_micros(spec, rates, 3601) == 2


def test_the_minimum_cap_is_one_minute():
    # given: 210000 µcr/hour
    # when / then
    assert minimum_cap_micros(SPEC, RATES) == 3_500


def test_reliability_of_a_new_host_is_four_fifths():
    # when / then
    assert reliability(host()) == Fraction(4, 5)
    assert reliability(host(jobs_finished=96, jobs_lost=0)) == Fraction(100, 101)
    assert reliability(host(tracked_seconds=3600, online_seconds=0)) == Fraction(2, 5)


def test_each_misfit_has_a_reason():
    # given / when / then
    assert misfit_reason(SPEC, host()) is None
    assert misfit_reason(SPEC, host(is_visible=False)) == "the host is not visible to you"
    assert misfit_reason(SPEC, host(is_online=False)) == "the host is offline"
    assert misfit_reason(SPEC, host(is_draining=True)) == "the host is draining"
    assert misfit_reason(SPEC, host(is_available=False)) == "the host is not available now"
    assert misfit_reason(SPEC, host(max_job_cpus=1)) == "the job needs 2 CPUs, the host offers 1"
    assert (
        misfit_reason(SPEC, host(memory_mb=512))
        == "the job needs 1024 MB of memory, the host offers 512"
    )
    assert (
        misfit_reason(JobSpec(Decimal(1), 1, 1, 60), host())
        == "the job needs 1 GPUs, the host offers 0"
    )
    assert (
        misfit_reason(SPEC, host(max_job_timeout_seconds=60))
        == "the timeout is over the host's limit of 60 seconds"
    )
    assert misfit_reason(SPEC, host(used_cpus=Decimal(7))) == "the host is busy with other jobs"
    assert (
        misfit_reason(SPEC, host(), max_cost_micros=3_499)
        == "max_cost_micros must cover one minute at the host's rates (3500)"
    )


def test_ranking_prefers_the_cheaper_host_when_equally_reliable():
    # given
    cheap = host(1, rates=Rates(50_000, 10_000, 0))
    dear = host(2)

    # when
    ranked = hosts_rank(SPEC, [dear, cheap])

    # then
    assert [r.candidate.host_id for r in ranked] == [1, 2]
    assert [r.estimate_micros for r in ranked] == [110_000, 210_000]


def test_reliability_can_outweigh_a_small_price_difference():
    # given: host 1 is 5 % cheaper but lost half its jobs
    flaky = host(1, rates=Rates(95_000, 10_000, 0), jobs_finished=10, jobs_lost=10)
    steady = host(2, jobs_finished=100)

    # when
    ranked = hosts_rank(SPEC, [flaky, steady])

    # then
    assert [r.candidate.host_id for r in ranked] == [2, 1]


def test_ranking_skips_misfits_and_excluded_hosts_and_breaks_ties_by_id():
    # given
    hosts = [host(3), host(1), host(2, is_online=False), host(4)]

    # when
    ranked = hosts_rank(SPEC, hosts, exclude=[4])

    # then
    assert [r.candidate.host_id for r in ranked] == [1, 3]


def test_a_job_needing_more_disk_than_the_host_allows_per_job_misfits():
    spec = JobSpec(cpus=Decimal(1), memory_mb=512, gpus=0, timeout_seconds=60, disk_mb=3000)

    assert misfit_reason(spec, host(job_disk_mb=2999, disk_free_mb=10**6)) == (
        "the job needs 3000 MB of disk; the host allows 2999"
    )
    assert misfit_reason(spec, host(job_disk_mb=3000, disk_free_mb=0)) is None


def test_without_job_disk_mb_the_free_disk_is_the_limit():
    spec = JobSpec(cpus=Decimal(1), memory_mb=512, gpus=0, timeout_seconds=60, disk_mb=3000)

    assert misfit_reason(spec, host(disk_free_mb=2000)) == (
        "the job needs 3000 MB of disk; the host allows 2000"
    )
    assert misfit_reason(spec, host(disk_free_mb=3000)) is None


def test_the_disk_a_job_needs_adds_its_file_systems_and_its_inputs_rounded_up():
    assert disk_needed_mb(work_mb=10, outputs_mb=20, tmp_mb=5, inputs_bytes=0) == 35
    assert disk_needed_mb(work_mb=10, outputs_mb=20, tmp_mb=5, inputs_bytes=1) == 36
    assert disk_needed_mb(work_mb=10, outputs_mb=20, tmp_mb=5, inputs_bytes=2 * 1024**2) == 37
