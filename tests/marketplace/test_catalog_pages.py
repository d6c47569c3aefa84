"""The catalog pages by cursor (issue 17): config.api.KeysetPagination over the selector's order.

A walk along ``next`` visits every host of the filtered set once, in order, whatever is
inserted between pages; ``previous`` walks back; a cursor that was not made here is a 400 that
names ``cursor``; ``count`` says whether it is exact; a page is at most two statements.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import override_settings
from django.utils import timezone

from hosts.models import Host
from tests.hosts.factories import host_create

pytestmark = pytest.mark.django_db

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# API ordering key -> how the test reads it from a row (never-seen hosts as seen at the epoch)
KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "price": lambda row: row["price_micros"],
    "reliability": lambda row: row["reliability_bps"],
    "gpu_price": lambda row: row["gpu_hour_micros"],
    "cpus": lambda row: row["cpus"],
    "memory": lambda row: row["memory_mb"],
    "last_seen": lambda row: (row["last_seen_at"] or EPOCH).timestamp(),
}
ORDERINGS = [
    "price",
    "-price",
    "-reliability",
    "gpu_price",
    "-cpus",
    "memory",
    "last_seen",
    "-last_seen",
    "price,-reliability",  # mixed directions: -reliability and -id negated
    "-cpus,memory,-last_seen",  # three keys, mixed, many ties: memory negated
    "-last_seen,price",  # a date first, an integer against it
    "price,-last_seen",  # a date against the first key: the expanded OR
    "cpus,memory",  # uniform, many ties
]
FILTER = "min_cpus=8"  # leaves out the 4-core hosts
NOW = timezone.now()


def _host(owner: Any, rng: random.Random) -> Host:
    """A host whose every key takes one of a few values, so ties are everywhere."""
    tracked = 100
    seen = rng.choice([None, NOW - timedelta(seconds=5), NOW - timedelta(hours=1)])
    return host_create(
        owner,
        cpus=rng.choice([4, 8, 16]),
        memory_mb=rng.choice([8192, 16384]),
        cpu_core_hour_micros=rng.choice([1_000, 2_000, 3_000]),
        memory_gb_hour_micros=rng.choice([0, 1_000]),
        gpu_hour_micros=rng.choice([0, 0, 50_000]),
        online_seconds=rng.choice([0, 50, 100]),
        tracked_seconds=tracked,
        status="online" if seen else "offline",
        last_seen_at=seen,
    )


def _rows() -> dict[int, dict[str, Any]]:
    """The filtered set (``FILTER``) with the columns the orderings read, by id."""
    columns = [
        "id",
        "cpus",
        "memory_mb",
        "price_micros",
        "reliability_bps",
        "gpu_hour_micros",
        "last_seen_at",
    ]
    return {row["id"]: row for row in Host.objects.filter(cpus__gte=8).values(*columns)}


def _sort_key(ordering: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    keys = ordering.split(",")

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        parts = [
            -KEYS[name.lstrip("-")](row) if name.startswith("-") else KEYS[name](row)
            for name in keys
        ]
        parts.append(-row["id"] if keys[-1].startswith("-") else row["id"])
        return tuple(parts)

    return key


def _in_order(ordering: str) -> list[int]:
    key = _sort_key(ordering)
    return [row["id"] for row in sorted(_rows().values(), key=key)]


def _get(client: Any, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.json()
    body: dict[str, Any] = response.json()
    return body


def _cursor(url: str) -> str:
    return parse_qs(urlsplit(url).query)["cursor"][0]


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_next_walks_the_filtered_set_in_order_once_while_hosts_are_inserted(
    hana, alice, client_for, ordering
):
    # given 30 hosts (some with 4 cores, filtered out), many tied on every key
    rng = random.Random(ordering)
    for _ in range(30):
        _host(hana, rng)
    client = client_for(alice)
    key = _sort_key(ordering)
    expected = set(_rows())

    # when walking by next, 4 per page, two hosts inserted between pages
    walked: list[int] = []
    url: str | None = f"/api/v1/hosts/?{FILTER}&ordering={ordering}&page_size=4"
    while url:
        assert len(walked) < 200, "the walk doesn't end"
        page = _get(client, url)
        walked += [listing["id"] for listing in page["results"]]
        url = page["next"]
        for _ in range(2 if url else 0):
            inserted = _host(hana, rng)
            row = _rows().get(inserted.pk)
            if row is not None and (not walked or key(row) > key(_rows()[walked[-1]])):
                expected.add(inserted.pk)  # ahead of the cursor: the walk must reach it

    # then every host that was there, and each one inserted ahead of the cursor, came once, in
    # order; those inserted behind it did not
    assert len(walked) == len(set(walked))
    assert set(walked) == expected
    rows = _rows()
    assert [key(rows[id_]) for id_ in walked] == sorted(key(rows[id_]) for id_ in walked)


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_previous_walks_back_to_the_first_page(hana, alice, client_for, ordering):
    # given
    rng = random.Random(f"back {ordering}")
    for _ in range(25):
        _host(hana, rng)
    client = client_for(alice)
    url: str | None = f"/api/v1/hosts/?{FILTER}&ordering={ordering}&page_size=3"
    last: dict[str, Any] = {}
    assert url is not None
    for _ in range(20):  # to the last page
        last = _get(client, url)
        url = last["next"]
        if url is None:
            break
    assert url is None, "the walk doesn't end"

    # when walking back by previous
    pages = [[listing["id"] for listing in last["results"]]]
    url = last["previous"]
    while url:
        assert len(pages) < 20, "the walk back doesn't end"
        page = _get(client, url)
        assert page["next"] is not None
        pages.insert(0, [listing["id"] for listing in page["results"]])
        url = page["previous"]

    # then the pages, front to back, are the whole filtered set in order
    assert list(itertools.chain(*pages)) == _in_order(ordering)
    assert all(len(page) == 3 for page in pages[:-1])


def test_a_walk_keeps_going_when_the_host_at_the_cursor_is_deleted(hana, alice, client_for):
    # given
    hosts = [host_create(hana, cpus=8, cpu_core_hour_micros=1_000 * i) for i in range(1, 8)]
    client = client_for(alice)
    first = _get(client, "/api/v1/hosts/?ordering=price&page_size=3")

    # when the last host shown, and the one after it, go
    Host.objects.filter(pk__in=[hosts[2].pk, hosts[3].pk]).delete()
    second = _get(client, first["next"])

    # then the next page starts after where the cursor was
    assert [listing["id"] for listing in second["results"]] == [h.pk for h in hosts[4:7]]


def test_previous_past_deleted_hosts_leads_back_to_the_first_page(hana, alice, client_for):
    # given
    hosts = [host_create(hana, cpu_core_hour_micros=1_000 * i) for i in range(1, 7)]
    client = client_for(alice)
    first = _get(client, "/api/v1/hosts/?ordering=price&page_size=3")
    second = _get(client, first["next"])

    # when every host before the second page is gone
    Host.objects.filter(pk__in=[h.pk for h in hosts[:3]]).delete()
    back = _get(client, second["previous"])

    # then that page is empty, with no previous, and its next is the first page
    assert (back["results"], back["previous"]) == ([], None)
    assert "cursor" not in back["next"]
    assert [listing["id"] for listing in _get(client, back["next"])["results"]] == [
        h.pk for h in hosts[3:6]
    ]


def test_next_and_previous_are_full_urls_that_keep_the_filters(hana, alice, client_for):
    # given
    for index in range(5):
        host_create(hana, cpu_core_hour_micros=1_000 + index)
    client = client_for(alice)

    # when
    first = _get(client, "/api/v1/hosts/?online=false&ordering=-price&page_size=2")
    second = _get(client, first["next"])

    # then
    assert first["previous"] is None
    assert first["next"].startswith("http://testserver/api/v1/hosts/?")
    query = parse_qs(urlsplit(first["next"]).query)
    assert (query["online"], query["ordering"], query["page_size"]) == (
        ["false"],
        ["-price"],
        ["2"],
    )
    assert second["previous"].startswith("http://testserver/api/v1/hosts/?")
    assert _get(client, second["previous"])["results"] == first["results"]


def _bad_cursor(client: Any, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert list(error["fields"]) == ["cursor"]
    assert error["message"].startswith("cursor: ")
    return list(error["fields"]["cursor"])


def test_a_cursor_not_made_here_is_refused_naming_cursor(hana, alice, client_for):
    # given
    for index in range(4):
        host_create(hana, cpu_core_hour_micros=1_000 + index)
    client = client_for(alice)
    cursor = _cursor(_get(client, "/api/v1/hosts/?page_size=2")["next"])
    payload, _, signature = cursor.rpartition(":")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")

    # then: tampered, truncated, made up, or re-signed by nobody
    for bad in [f"{forged}:{signature}", cursor[:-3], "abc", f"{payload}:{'x' * len(signature)}"]:
        assert _bad_cursor(client, f"/api/v1/hosts/?page_size=2&cursor={bad}") == [
            "not a cursor this API made (take it from next or previous)"
        ]


def test_a_cursor_for_another_ordering_or_beside_page_is_refused(hana, alice, client_for):
    # given
    for index in range(4):
        host_create(hana, cpu_core_hour_micros=1_000 + index)
    client = client_for(alice)
    cursor = _cursor(_get(client, "/api/v1/hosts/?ordering=price&page_size=2")["next"])

    # then
    assert _bad_cursor(client, f"/api/v1/hosts/?ordering=-price&cursor={cursor}") == [
        "the cursor is for another ordering; start again without it"
    ]
    assert _bad_cursor(client, f"/api/v1/hosts/?page=2&cursor={cursor}") == [
        "send either cursor or page, not both"
    ]
    # the same ordering with other filters is a position in the same order: fine
    assert (
        client.get(f"/api/v1/hosts/?ordering=price&min_cpus=1&cursor={cursor}").status_code == 200
    )


@override_settings(KEYSET_COUNT_CAP=5)
def test_count_is_exact_up_to_the_cap_and_says_when_it_stopped_there(hana, alice, client_for):
    # given
    for index in range(7):
        host_create(hana, cpus=8 if index < 5 else 4, cpu_core_hour_micros=1_000 + index)
    client = client_for(alice)

    def count(query: str) -> tuple[int, bool]:
        page = _get(client, f"/api/v1/hosts/?{query}")
        return page["count"], page["count_is_capped"]

    # then
    assert count("page_size=2") == (5, True)  # 7 match: more than the cap
    assert count("page_size=2&min_cpus=8") == (5, False)  # exactly the cap
    assert count("page_size=2&min_cpus=16") == (0, False)
    second = _get(client, "/api/v1/hosts/?page_size=2&min_cpus=8")["next"]
    assert (_get(client, second)["count"], _get(client, second)["count_is_capped"]) == (5, False)
    assert count("page_size=10&min_cpus=5") == (5, False)  # one page holds them all
    assert count("page=1&page_size=2") == (7, False)  # numbered pages count exactly


def test_a_page_is_two_statements_at_most(hana, alice, client_for, django_assert_num_queries):
    # given
    for index in range(9):
        host_create(hana, cpu_core_hour_micros=1_000 + index, last_seen_at=None)
    client = client_for(alice)

    # then: the page and the capped count; a page that holds the whole set counts itself
    with django_assert_num_queries(2):
        first = _get(client, "/api/v1/hosts/?ordering=-last_seen,price&page_size=4")
    with django_assert_num_queries(2):
        second = _get(client, first["next"])
    with django_assert_num_queries(2):
        _get(client, second["previous"])
    with django_assert_num_queries(1):
        whole = _get(client, "/api/v1/hosts/?ordering=-last_seen,price&page_size=9")
    assert (whole["count"], whole["count_is_capped"], whole["next"]) == (9, False, None)


def test_numbered_pages_still_work_for_old_clients(hana, alice, client_for):
    # given
    hosts = [host_create(hana, cpu_core_hour_micros=1_000 * i) for i in range(1, 6)]
    client = client_for(alice)

    # when
    page = _get(client, "/api/v1/hosts/?ordering=price&page=2&page_size=2")

    # then: the old path, with the same keys
    assert [listing["id"] for listing in page["results"]] == [h.pk for h in hosts[2:4]]
    assert (page["count"], page["count_is_capped"]) == (5, False)
    assert parse_qs(urlsplit(page["next"]).query)["page"] == ["3"]
    assert "page" not in parse_qs(urlsplit(page["previous"]).query)
    assert client.get("/api/v1/hosts/?page=9").status_code == 404


def test_page_size_is_cut_to_500_and_a_bad_one_gets_the_default(hana, alice, client_for):
    # given
    Host.objects.bulk_create([Host(owner=hana, name=f"h{index}") for index in range(502)])
    client = client_for(alice)

    def size(query: str) -> int:
        return len(_get(client, f"/api/v1/hosts/?{query}")["results"])

    # then: as everywhere else (config.api.Pagination)
    assert [size("page_size=501"), size("page_size=7"), size("page_size=0")] == [500, 7, 50]
    assert size("page_size=lots") == 50
