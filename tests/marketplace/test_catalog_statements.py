"""The catalog's statements are compiled once per shape of the query (config.statements).

One compiled statement answers every user and every value of its shape with that request's
own rows; every filter combination reads what the queryset (the one definition) selects; a
value beyond every column matches nothing; a value the SQL doesn't take as a parameter is
refused when the statement is compiled, not answered with the sentinel's rows.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import QueryDict
from django.utils import timezone

from accounts.models import Membership, Organisation
from config import statements
from hosts.models import Host
from marketplace.apis import CatalogQueryInput
from marketplace.selectors import hosts_catalog
from tests.hosts.factories import host_create

pytestmark = pytest.mark.django_db


def _walk(client: Any, url: str | None) -> tuple[list[int], list[tuple[int, bool]]]:
    """Every id along ``next`` from ``url``, and each page's (count, count_is_capped)."""
    ids: list[int] = []
    counts = []
    while url:
        assert len(ids) < 500, "the walk doesn't end"
        response = client.get(url)
        assert response.status_code == 200, response.json()
        page = response.json()
        ids += [listing["id"] for listing in page["results"]]
        counts.append((page["count"], page["count_is_capped"]))
        url = page["next"]
    return ids, counts


def _queryset_ids(user: Any, query: str) -> list[int]:
    """The same query through the queryset (the ``?page=N`` path's definition)."""
    parsed = CatalogQueryInput(data=QueryDict(query))
    assert parsed.is_valid(), parsed.errors
    return list(hosts_catalog(user=user, filters=parsed.filters()).values_list("id", flat=True))


def test_one_compiled_statement_serves_every_user_and_value_of_its_shape(
    hana, alice, mallory, client_for
):
    # given: a pool alice belongs to (shown in its catalog to members only) and public hosts
    lab = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=lab, user=alice)
    small = host_create(hana, cpus=8, cpu_core_hour_micros=1_000)
    big = host_create(hana, cpus=64, cpu_core_hour_micros=2_000)
    pooled = host_create(hana, cpus=64, visibility="private", organisation=lab)
    other = host_create(hana, cpus=16, cpu_core_hour_micros=3_000)
    statements._cache.clear()

    def ids(user: Any, query: str) -> list[int]:
        response = client_for(user).get(f"/api/v1/hosts/?{query}&ordering=price&page_size=1")
        assert response.status_code == 200, response.json()
        page = response.json()
        return [listing["id"] for listing in page["results"]] + _walk(
            client_for(user), page["next"]
        )[0]

    # when: one shape (min_cpus given, by price, 1 per page) for two users and two values
    with mock.patch.object(statements, "_compile", wraps=statements._compile) as compile_:
        seen = [ids(alice, "min_cpus=8"), ids(mallory, "min_cpus=8"), ids(alice, "min_cpus=32")]

    # then: each got its own rows; the first page, a page after a cursor and the count were
    # compiled once each
    assert seen == [
        [small.pk, big.pk, other.pk, pooled.pk],
        [small.pk, big.pk, other.pk],
        [big.pk, pooled.pk],
    ]
    assert compile_.call_count == 3


@pytest.mark.parametrize(
    "query",
    [
        "arch=x86_64&min_disk_mb=20000&max_price_micros=30000&online=true"
        "&ordering=-last_seen,price",
        "accepting=false&gpu=false&os=linux&min_memory_mb=16384&ordering=memory,-cpus",
        "gpu=true&min_gpus=2&ordering=gpu_price,-reliability",
        "accepting=true&min_cpus=8&ordering=-price,last_seen",
        "online=false&arch=arm64&ordering=cpus,memory,-last_seen",
    ],
)
def test_every_filter_combination_reads_what_the_queryset_selects(hana, alice, client_for, query):
    # given: hosts of every kind, alice's pool among them, many tied on every key
    rng = random.Random(query)
    lab = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=lab, user=alice)
    now = timezone.now()
    for index in range(40):
        gpus = rng.choice([0, 0, 1, 2])
        seen = rng.choice([None, now - timedelta(seconds=5), now - timedelta(hours=2)])
        visibility = rng.choice(["public", "public", "private"])
        host_create(
            hana,
            name=f"h{index}",
            arch=rng.choice(["x86_64", "arm64"]),
            os=rng.choice(["linux", "darwin"]),
            cpus=rng.choice([4, 8, 16]),
            memory_mb=rng.choice([8192, 16384, 32768]),
            disk_free_mb=rng.choice([10_000, 30_000]),
            gpu_count=gpus,
            gpus=[{"model": "A", "memory_mb": 1}] * gpus,
            gpu_hour_micros=rng.choice([0, 50_000]),
            cpu_core_hour_micros=rng.choice([1_000, 20_000, 40_000]),
            is_available=rng.random() > 0.2,
            status=rng.choice(["online", "busy", "draining"]) if seen else "offline",
            last_seen_at=seen,
            online_seconds=rng.choice([0, 50]),
            tracked_seconds=100,
            visibility=visibility,
            organisation=lab if visibility == "private" else rng.choice([None, lab]),
        )
    expected = _queryset_ids(alice, query)

    # when: walking it by cursor, 3 per page
    walked, counts = _walk(client_for(alice), f"/api/v1/hosts/?{query}&page_size=3")

    # then: the same hosts in the same order, each page counting them all
    assert walked == expected
    assert walked, "the query matches no host: the test shows nothing"
    assert set(counts) == {(len(expected), False)}


def test_a_pool_filter_reads_the_pool_through_the_same_statement(hana, alice, client_for):
    # given
    lab = Organisation.objects.create(name="lab")
    other = Organisation.objects.create(name="other")
    Membership.objects.create(organisation=lab, user=alice)
    Membership.objects.create(organisation=other, user=alice)
    pooled = [host_create(hana, visibility="private", organisation=lab) for _ in range(3)]
    host_create(hana, visibility="private", organisation=other)
    host_create(hana)

    # when
    walked = {
        organisation.pk: _walk(
            client_for(alice), f"/api/v1/hosts/?pool={organisation.pk}&page_size=2"
        )[0]
        for organisation in (lab, other)
    }

    # then
    assert walked[lab.pk] == [host.pk for host in pooled]
    assert len(walked[other.pk]) == 1


def test_a_minimum_beyond_every_column_matches_nothing(hana, alice, client_for):
    # given
    host_create(hana)
    client = client_for(alice)

    # then: an answer, not a 500 (an integer past 64 bits is no parameter a database takes)
    for query in ["min_cpus=" + "9" * 30, f"min_memory_mb={2**63}", f"min_disk_mb={2**64}"]:
        response = client.get(f"/api/v1/hosts/?{query}")
        assert response.status_code == 200, response.json()
        body = response.json()
        assert (body["count"], body["count_is_capped"], body["results"]) == (0, False, [])


def test_a_non_member_pool_is_refused_before_any_page_is_read(
    hana, alice, client_for, django_assert_num_queries
):
    # given
    lab = Organisation.objects.create(name="lab")
    host_create(hana, visibility="private", organisation=lab)

    # when: only the membership is read
    with django_assert_num_queries(1):
        response = client_for(alice).get(f"/api/v1/hosts/?pool={lab.pk}")

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_pool"
    assert list(response.json()["error"]["fields"]) == ["pool"]


def test_a_value_the_sql_does_not_take_as_a_parameter_is_refused_when_compiled():
    # given: a build that leaves one of its values out of the SQL
    def build(values: Any) -> Any:
        return Host.objects.filter(cpus__gte=values["min_cpus"]).values("id")

    # then: refused, rather than every request answered with the sentinel's rows
    with pytest.raises(ImproperlyConfigured, match="not a parameter"):
        statements.compiled(("test",), {"min_cpus": 4, "unused": 7}, build)
    with pytest.raises(ImproperlyConfigured, match="in the shape"):
        statements.compiled(("test", "bool"), {"flag": True}, build)
