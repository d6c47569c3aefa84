from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.models import Membership, Organisation
from hosts.selectors import hosts_owned
from hosts.serializers import HostListingOutput, OwnedHostOutput
from marketplace.selectors import hosts_accepting_jobs
from tests.hosts.factories import host_create, online

pytestmark = pytest.mark.django_db


def _ids(response):
    assert response.status_code == 200, response.json()
    return [listing["id"] for listing in response.json()["results"]]


def test_catalog_lists_public_hosts_with_listing_fields(hana, alice, client_for):
    # given
    host = host_create(
        hana,
        name="box",
        gpus=[{"model": "NVIDIA RTX 4090", "memory_mb": 24564}],
        gpu_count=1,
        gpu_hour_micros=300_000,
        online_seconds=90,
        tracked_seconds=100,
        jobs_finished=1,
        **online(),
    )

    # when
    response = client_for(alice).get("/api/v1/hosts/")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    listing = body["results"][0]
    assert listing == {
        **listing,
        "id": host.pk,
        "name": "box",
        "arch": "x86_64",
        "cpus": 16,
        "memory_mb": 65536,
        "gpus": [{"model": "NVIDIA RTX 4090", "memory_mb": 24564}],
        "gpu_count": 1,
        "cpu_core_hour_micros": 20_000,
        "memory_gb_hour_micros": 2_000,
        "gpu_hour_micros": 300_000,
        "price_micros": 22_000,
        "status": "online",
        "is_accepting_jobs": True,
        "reliability_bps": 9000,
        "uptime_bps": 9000,
        "jobs_finished": 1,
        "jobs_lost": 0,
        "visibility": "public",
        "organisation": None,
    }
    assert "availability_policy" not in listing
    assert "connection_id" not in listing


def test_catalog_needs_a_signed_in_user(api):
    assert api.get("/api/v1/hosts/").status_code in (401, 403)


def test_private_hosts_are_seen_by_members_of_their_organisation_only(
    hana, alice, mallory, client_for
):
    # given
    lab = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=lab, user=alice)
    Membership.objects.create(organisation=lab, user=hana)
    public = host_create(hana, name="public")
    private = host_create(hana, name="private", visibility="private", organisation=lab)
    own_private = host_create(
        mallory,
        name="mallory's",
        visibility="private",
        organisation=Organisation.objects.create(name="m"),
    )

    # when / then
    assert _ids(client_for(alice).get("/api/v1/hosts/?ordering=cpus")) == [public.pk, private.pk]
    assert _ids(client_for(mallory).get("/api/v1/hosts/")) == [public.pk, own_private.pk]
    assert client_for(mallory).get(f"/api/v1/hosts/{private.pk}/").status_code == 404
    assert client_for(alice).get(f"/api/v1/hosts/{private.pk}/").json()["name"] == "private"


@override_settings(HOST_OFFLINE_AFTER_SECONDS=45)
def test_a_host_whose_reports_stopped_shows_offline_before_the_reaper_runs(hana, alice, client_for):
    # given
    stale = host_create(hana, status="online", last_seen_at=timezone.now() - timedelta(seconds=60))
    fresh = host_create(hana, **online())
    client = client_for(alice)

    # when
    listing = client.get(f"/api/v1/hosts/{stale.pk}/").json()
    online_ids = _ids(client.get("/api/v1/hosts/?online=true"))
    offline_ids = _ids(client.get("/api/v1/hosts/?online=false"))

    # then
    assert (listing["status"], listing["is_accepting_jobs"]) == ("offline", False)
    assert online_ids == [fresh.pk]
    assert offline_ids == [stale.pk]


def test_filters(hana, alice, client_for):
    # given
    arm = host_create(hana, arch="arm64", os="darwin", cpus=10, memory_mb=16384, **online())
    big = host_create(hana, cpus=64, memory_mb=262144, cpu_core_hour_micros=50_000, **online())
    gpu = host_create(
        hana, gpu_count=2, gpus=[{"model": "A", "memory_mb": 1}] * 2, cpu_core_hour_micros=5_000
    )
    draining = host_create(hana, is_draining=True, status="draining", last_seen_at=timezone.now())
    busy_unavailable = host_create(
        hana, status="busy", is_available=False, last_seen_at=timezone.now()
    )
    client = client_for(alice)

    def ids(query):
        return sorted(_ids(client.get(f"/api/v1/hosts/?{query}")))

    # then
    assert ids("arch=aarch64") == [arm.pk]
    assert ids("os=Darwin") == [arm.pk]
    assert ids("min_cpus=64") == [big.pk]
    assert ids("min_memory_mb=200000") == [big.pk]
    assert ids("gpu=true") == [gpu.pk]
    assert ids("min_gpus=2") == [gpu.pk]
    assert len(ids("gpu=false")) == 4
    assert ids("max_price_micros=7000") == [gpu.pk]
    assert ids("online=true") == sorted([arm.pk, big.pk, draining.pk, busy_unavailable.pk])
    assert ids("accepting=true") == sorted([arm.pk, big.pk])
    assert ids("arch=x86_64&min_cpus=16&online=true&max_price_micros=30000") == sorted(
        [draining.pk, busy_unavailable.pk]
    )


def test_orderings(hana, alice, client_for):
    # given
    cheap = host_create(hana, cpu_core_hour_micros=1_000, online_seconds=10, tracked_seconds=100)
    dear = host_create(hana, cpu_core_hour_micros=9_000, online_seconds=100, tracked_seconds=100)
    middle = host_create(hana, cpu_core_hour_micros=5_000, online_seconds=50, tracked_seconds=100)
    twin = host_create(hana, cpu_core_hour_micros=5_000, online_seconds=90, tracked_seconds=100)
    client = client_for(alice)

    def ids(ordering):
        return _ids(client.get(f"/api/v1/hosts/?ordering={ordering}"))

    # then
    # ties go by id in the direction of the last key: -price is price reversed
    assert ids("price") == [cheap.pk, middle.pk, twin.pk, dear.pk]
    assert ids("-price") == [dear.pk, twin.pk, middle.pk, cheap.pk]
    assert ids("-reliability") == [dear.pk, twin.pk, middle.pk, cheap.pk]
    assert ids("price,-reliability") == [cheap.pk, twin.pk, middle.pk, dear.pk]
    assert ids("-price,reliability") == [dear.pk, middle.pk, twin.pk, cheap.pk]
    assert _ids(client.get("/api/v1/hosts/")) == ids("price")


def test_min_disk_mb_is_the_disk_one_job_may_take_as_placement_counts_it(hana, alice, client_for):
    # given: a quota-enforcing host's per-job allowance; an older agent's free disk
    roomy = host_create(hana, disk_quota=True, job_disk_mb=50_000, disk_free_mb=60_000)
    capped = host_create(hana, disk_quota=True, job_disk_mb=5_000, disk_free_mb=60_000)
    old = host_create(hana, job_disk_mb=None, disk_free_mb=20_000)
    client = client_for(alice)

    def ids(query):
        return sorted(_ids(client.get(f"/api/v1/hosts/?{query}")))

    # then
    assert ids("min_disk_mb=20000") == sorted([roomy.pk, old.pk])
    assert ids("min_disk_mb=20001") == [roomy.pk]
    assert ids("min_disk_mb=5000") == sorted([roomy.pk, capped.pk, old.pk])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("min_disk_mb=-5", "min_disk_mb"),
        ("ordering=owner", "ordering"),
        ("ordering=price,cpus,memory,-reliability", "ordering"),
        ("min_cpus=-1", "min_cpus"),
        ("min_memory_mb=lots", "min_memory_mb"),
        ("gpu=maybe", "gpu"),
    ],
)
def test_bad_filters_are_refused(alice, client_for, query, field):
    response = client_for(alice).get(f"/api/v1/hosts/?{query}")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_the_catalog_page_takes_two_queries_however_many_hosts(
    hana, alice, client_for, django_assert_num_queries
):
    # given
    lab = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=lab, user=alice)
    for index in range(30):
        host_create(hana, name=f"h{index}", **online())
    host_create(hana, visibility="private", organisation=lab)
    client = client_for(alice)

    # when / then: the count and the page (memberships are a subquery)
    with django_assert_num_queries(2):
        response = client.get("/api/v1/hosts/?online=true&ordering=-reliability&page_size=20")
    assert response.json()["count"] == 30
    assert len(response.json()["results"]) == 20
    with django_assert_num_queries(1):
        client.get(f"/api/v1/hosts/{response.json()['results'][0]['id']}/")


@pytest.mark.parametrize("serializer_class", [HostListingOutput, OwnedHostOutput])
def test_the_fast_representation_matches_the_declared_fields(hana, serializer_class):
    # given
    lab = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=lab, user=hana)
    host_create(
        hana,
        visibility="private",
        organisation=lab,
        gpus=[{"model": "A", "memory_mb": 1}],
        gpu_count=1,
        online_seconds=5,
        tracked_seconds=7,
        availability_policy={
            "timezone": "Europe/Berlin",
            "windows": [],
            "idle_minutes": 5,
            "max_load": None,
        },
        **online(),
    )
    host_create(hana, name="never seen")
    hosts = hosts_owned(owner=hana)

    # when
    fast = serializer_class(hosts, many=True).data
    # DRF's own, field by field (skipping the fast to_representation overrides)
    declared = [super(HostListingOutput, serializer_class()).to_representation(h) for h in hosts]

    # then
    assert [dict(item) for item in fast] == [dict(item) for item in declared]
    assert list(fast[0]) == list(serializer_class.Meta.fields)


def test_hosts_accepting_jobs_are_fresh_connected_available_and_not_drained(hana, mallory):
    # given
    lab = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=lab, user=mallory)
    accepting = host_create(hana, **online())
    busy_private = host_create(
        mallory, visibility="private", organisation=lab, status="busy", last_seen_at=timezone.now()
    )
    host_create(hana, is_available=False, **online())
    host_create(hana, is_draining=True, **online())
    host_create(hana, status="online", last_seen_at=timezone.now() - timedelta(hours=1))
    host_create(hana)

    # when
    ids = sorted(hosts_accepting_jobs().values_list("id", flat=True))

    # then
    assert ids == sorted([accepting.pk, busy_private.pk])


def test_a_catalog_page_lists_what_the_host_page_shows(hana, alice, client_for):
    # given: the page selects only the listing's columns (hosts.serializers.LISTING_COLUMNS)
    host = host_create(
        hana,
        gpus=[{"model": "A", "memory_mb": 1}],
        gpu_count=1,
        online_seconds=5,
        tracked_seconds=7,
        job_disk_mb=1_000,
        quarantined_at=timezone.now(),
        **online(),
    )
    client = client_for(alice)

    # when
    listed = client.get("/api/v1/hosts/?ordering=-last_seen").json()["results"]

    # then
    assert listed == [client.get(f"/api/v1/hosts/{host.pk}/").json()]
    assert listed[0]["is_accepting_jobs"] is False
