from datetime import timedelta

import pytest
from django.forms.models import model_to_dict
from django.test import override_settings
from django.utils import timezone

from agent.protocol import PROTOCOL_VERSION
from config.errors import ValidationFailed
from hosts import services
from hosts.models import Host, HostCredential, HostStatus
from hosts.services import Presence
from hosts.tasks import hosts_mark_offline_task
from tests.hosts.factories import credential_create, host_create, specs

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)


def _hello(**overrides):
    hello = {
        "agent_version": "0.1.0",
        "protocol_version": PROTOCOL_VERSION,
        "specs": specs(cpus=8, gpus=[{"model": "NVIDIA RTX 4090", "memory_mb": 24564}]),
        "running_jobs": [],
        "is_available": True,
        "is_draining": False,
    }
    hello.update(overrides)
    return hello


def _heartbeat(**overrides):
    heartbeat = {"load": 0.1, "is_available": True, "unavailable_reason": "", "running_jobs": []}
    heartbeat.update(overrides)
    return heartbeat


@pytest.fixture
def host(hana):
    host = host_create(hana, name="box")
    credential_create(host)
    return host


def test_hello_records_specs_and_brings_the_host_online(host):
    # when
    accepted = services.host_hello(host_id=host.pk, connection_id="conn-1", hello=_hello(), now=T0)

    # then
    assert accepted == services.HelloAccepted(
        host_id=host.pk,
        is_draining=False,
        policy={"timezone": "UTC", "windows": [], "idle_minutes": None, "max_load": None},
    )
    host.refresh_from_db()
    assert (host.status, host.last_seen_at, host.agent_version) == ("online", T0, "0.1.0")
    assert (host.cpus, host.gpu_count) == (8, 1)
    assert host.gpus == [{"model": "NVIDIA RTX 4090", "memory_mb": 24564}]
    assert (host.online_seconds, host.tracked_seconds) == (0, 0)


def test_heartbeats_count_online_time_and_gaps_count_only_as_tracked(host):
    # given: online at T0, heartbeat 10 s later
    services.host_hello(host_id=host.pk, connection_id="conn-1", hello=_hello(), now=T0)
    services.host_heartbeat(
        host_id=host.pk,
        connection_id="conn-1",
        heartbeat=_heartbeat(),
        now=T0 + timedelta(seconds=10),
    )
    # the agent disconnects at +20 s and comes back at +120 s
    services.host_disconnect(
        host_id=host.pk, connection_id="conn-1", now=T0 + timedelta(seconds=20)
    )

    # when
    services.host_hello(
        host_id=host.pk, connection_id="conn-2", hello=_hello(), now=T0 + timedelta(seconds=120)
    )

    # then
    host.refresh_from_db()
    assert (host.online_seconds, host.tracked_seconds) == (20, 120)
    assert host.reliability_bps == 10_000 * 20 // 120


def test_a_silence_longer_than_the_cutoff_counts_only_the_cutoff_as_online(host):
    services.host_hello(host_id=host.pk, connection_id="conn-1", hello=_hello(), now=T0)

    with override_settings(HOST_OFFLINE_AFTER_SECONDS=45):
        services.host_heartbeat(
            host_id=host.pk,
            connection_id="conn-1",
            heartbeat=_heartbeat(),
            now=T0 + timedelta(seconds=100),
        )

    host.refresh_from_db()
    assert (host.online_seconds, host.tracked_seconds) == (45, 100)


def test_heartbeat_records_availability_busy_and_local_drain(host):
    services.host_hello(host_id=host.pk, connection_id="conn-1", hello=_hello(), now=T0)

    services.host_heartbeat(
        host_id=host.pk,
        connection_id="conn-1",
        heartbeat=_heartbeat(
            is_available=False,
            unavailable_reason="user_active",
            running_jobs=[{"job_id": 4, "attempt": 1}],
        ),
        now=T0,
    )
    host.refresh_from_db()
    assert (host.status, host.is_available, host.unavailable_reason) == (
        "busy",
        False,
        "user_active",
    )

    services.host_heartbeat(
        host_id=host.pk, connection_id="conn-1", heartbeat=_heartbeat(is_draining=True), now=T0
    )
    host.refresh_from_db()
    assert (host.status, host.is_available, host.unavailable_reason) == ("draining", True, "")
    assert host.is_draining is False  # the owner's flag is the owner's


def test_a_replaced_connection_changes_nothing(host):
    # given: conn-1 said hello, then conn-2 (connected later) did
    first = services.host_connect(host_id=host.pk)
    services.host_hello(
        host_id=host.pk, connection_id="conn-1", connection_seq=first, hello=_hello(), now=T0
    )
    second = services.host_connect(host_id=host.pk)
    services.host_hello(
        host_id=host.pk, connection_id="conn-2", connection_seq=second, hello=_hello(), now=T0
    )
    before = model_to_dict(Host.objects.get(pk=host.pk))

    # when: the older socket speaks again (its hello too: served late by a stalled server)
    heartbeat = services.host_heartbeat(
        host_id=host.pk,
        connection_id="conn-1",
        heartbeat=_heartbeat(is_available=False, unavailable_reason="x"),
        now=T0 + timedelta(seconds=5),
    )
    hello = services.host_hello(
        host_id=host.pk,
        connection_id="conn-1",
        connection_seq=first,
        hello=_hello(agent_version="9"),
        now=T0,
    )
    disconnected = services.host_disconnect(host_id=host.pk, connection_id="conn-1")

    # then
    assert (heartbeat, hello, disconnected) == (Presence.REPLACED, Presence.REPLACED, False)
    assert model_to_dict(Host.objects.get(pk=host.pk)) == before
    assert before["connection_id"] == "conn-2"


def test_a_connection_becomes_live_by_saying_hello_not_by_connecting(host):
    # given: the live socket said hello
    live = services.host_connect(host_id=host.pk)
    services.host_hello(
        host_id=host.pk, connection_id="conn-1", connection_seq=live, hello=_hello(), now=T0
    )

    # when: another handshake with the credential connects (a stalled server's backlog) but
    # never says hello
    late = services.host_connect(host_id=host.pk)

    # then: the live socket stays live and its heartbeats count
    assert late > live
    heartbeat = services.host_heartbeat(
        host_id=host.pk, connection_id="conn-1", heartbeat=_heartbeat(), now=T0
    )
    assert heartbeat is Presence.CURRENT
    assert Host.objects.get(pk=host.pk).connection_id == "conn-1"

    # and when it does say hello (a second agent really holds the credential), it takes over
    services.host_hello(
        host_id=host.pk, connection_id="conn-2", connection_seq=late, hello=_hello(), now=T0
    )
    assert Host.objects.get(pk=host.pk).connection_id == "conn-2"


def test_hello_records_slots_readiness_isolation_and_install_id(host):
    # given an agent of today
    hello = _hello(
        install_id="a1b2c3d4e5f6",
        slots=3,
        readiness={"ready": False, "reason": "the runner image is missing", "isolation": "docker"},
    )

    # when
    services.host_hello(host_id=host.pk, connection_id="conn-1", hello=hello, now=T0)

    # then
    host.refresh_from_db()
    assert (host.slots, host.is_ready, host.not_ready_reason, host.isolation) == (
        3,
        False,
        "the runner image is missing",
        "docker",
    )
    assert host.install_id == "a1b2c3d4e5f6"

    # and a heartbeat updates them
    services.host_heartbeat(
        host_id=host.pk,
        connection_id="conn-1",
        heartbeat=_heartbeat(
            slots=2, readiness={"ready": True, "reason": "", "isolation": "docker"}
        ),
        now=T0,
    )
    host.refresh_from_db()
    assert (host.slots, host.is_ready, host.not_ready_reason) == (2, True, "")


def test_an_older_agent_gets_one_slot_ready_and_isolation_from_its_specs(host):
    services.host_hello(
        host_id=host.pk,
        connection_id="conn-1",
        hello=_hello(specs=specs(docker_available=False)),
        now=T0,
    )

    host.refresh_from_db()
    assert (host.slots, host.is_ready, host.isolation) == (1, True, "none")


def test_a_connection_whose_credential_was_revoked_is_told_so(host, hana):
    services.host_hello(host_id=host.pk, connection_id="conn-1", hello=_hello(), now=T0)
    services.credential_revoke(owner=hana, host_id=host.pk)

    presence = services.host_heartbeat(
        host_id=host.pk, connection_id="conn-1", heartbeat=_heartbeat(), now=T0
    )

    assert presence is Presence.REVOKED
    assert Host.objects.get(pk=host.pk).status == HostStatus.OFFLINE
    assert HostCredential.objects.filter(revoked_at__isnull=True).count() == 0


def test_hello_with_impossible_specs_changes_nothing(host):
    before = model_to_dict(Host.objects.get(pk=host.pk))

    with pytest.raises(ValidationFailed):
        services.host_hello(
            host_id=host.pk, connection_id="conn-1", hello=_hello(specs=specs(cpus=0)), now=T0
        )

    assert model_to_dict(Host.objects.get(pk=host.pk)) == before


@override_settings(HOST_OFFLINE_AFTER_SECONDS=45)
def test_the_reaper_marks_silent_hosts_offline(hana):
    # given
    now = timezone.now()
    silent = host_create(hana, status="online", last_seen_at=now - timedelta(seconds=46))
    draining = host_create(hana, status="draining", last_seen_at=now - timedelta(seconds=300))
    fresh = host_create(hana, status="busy", last_seen_at=now - timedelta(seconds=30))
    offline = host_create(hana, status="offline", last_seen_at=now - timedelta(days=3))

    # when
    marked = hosts_mark_offline_task.delay().get()

    # then
    assert marked == 2
    statuses = dict(Host.objects.values_list("pk", "status"))
    assert statuses == {
        silent.pk: "offline",
        draining.pk: "offline",
        fresh.pk: "busy",
        offline.pk: "offline",
    }
    assert hosts_mark_offline_task.delay().get() == 0


def test_the_reaper_is_scheduled(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["hosts-mark-offline"]

    assert entry["task"] == "hosts.tasks.hosts_mark_offline_task"
    assert entry["schedule"].total_seconds() == max(1, settings.HOST_OFFLINE_AFTER_SECONDS // 3)


@pytest.mark.parametrize(
    ("online", "tracked", "finished", "lost", "expected"),
    [
        (0, 0, 0, 0, 0),
        (50, 100, 0, 0, 5000),
        (100, 100, 3, 0, 10_000),
        (100, 100, 0, 1, 5000),
        (90, 100, 9, 1, 9000 * 10 // 11),
    ],
)
def test_reliability_is_uptime_times_completion(hana, online, tracked, finished, lost, expected):
    host = host_create(
        hana, online_seconds=online, tracked_seconds=tracked, jobs_finished=finished, jobs_lost=lost
    )

    host.refresh_from_db()

    assert host.reliability_bps == expected


def test_job_outcomes_and_flags_are_counted_and_move_reliability(hana):
    # given
    host = host_create(hana, online_seconds=100, tracked_seconds=100)

    # when
    services.host_job_outcome_record(host_id=host.pk, is_finished=True)
    services.host_job_outcome_record(host_id=host.pk, is_finished=True)
    services.host_job_outcome_record(host_id=host.pk, is_finished=False)
    services.host_report_flag(host_id=host.pk)

    # then
    host.refresh_from_db()
    assert (host.jobs_finished, host.jobs_lost, host.flagged_reports) == (2, 1, 1)
    assert host.last_flag_reason == "impossible_report"
    # a flag counts like a lost job (issue 11): (2 + 1) / (2 + 1 + 1 + 1)
    assert host.reliability_bps == 10_000 * 3 // 5
    assert host.quarantined_at is None


def test_sub_second_heartbeats_add_up_to_the_real_online_time(host):
    # given: heartbeats every 0.9 s for 9 s
    start = T0 + timedelta(milliseconds=500)
    services.host_hello(host_id=host.pk, connection_id="conn-1", hello=_hello(), now=start)

    # when
    for beat in range(1, 11):
        services.host_heartbeat(
            host_id=host.pk,
            connection_id="conn-1",
            heartbeat=_heartbeat(),
            now=start + timedelta(milliseconds=900 * beat),
        )

    # then: 9 s online (0.5 -> 9.5), not 0 from truncating each 0.9 s gap
    host.refresh_from_db()
    assert (host.online_seconds, host.tracked_seconds) == (9, 9)
