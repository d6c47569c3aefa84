"""Catalog latency (10,000 hosts; `--hosts 100000` for ten times that): the API beside the
same SQL run raw, and beside the old numbered pages.

    python -m bench.catalog [--hosts 10000] [--iterations 100] [--explain] [--layers]

Uses DATABASE_URL (migrating it if needed), inserts the hosts inside a transaction and rolls
everything back at the end, so it leaves the database as it found it. For each typical query
(the web app's orderings among them) and a deep page (the 21st, reached by following `next`
20 times) it prints p50/p99 of the whole API request paged by cursor (authentication forced,
so no token lookup; the middleware, DRF with its throttle, the query's validation, the page's
statements, the listings and the JSON) and two baselines measured in the same rounds: the SQL
statements that request ran, replayed raw through the same connection (the difference is
what Django and DRF add), and the same page through the old path, `?page=N` (an exact
`COUNT(*)` and `OFFSET`). The first statement of a page is the page; the second, if any, the
capped count (`--explain` prints both plans). The API compiles each shape's statements once
(config.statements), on the warm-up call; what it sends the server then is the text the
replay sends, values and all, so the replay is the same work on the server.

`--layers` prints, instead of the table, what each layer around one query's page costs (the
same rounds taking turns): the request as the table times it, the same with a real API token
(the authentication the table leaves out), the view called without the test client and the
middleware, the same without its throttles, and the replayed SQL.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import timedelta
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
# Throttling stays on (its cache lookup is part of a request) but must never trip here.
os.environ.setdefault("THROTTLE_USER", "1000000/min")
# Inserting 100,000 hosts and timing them takes minutes: a connected host (seen 0-20 s before
# it was inserted) must stay online all along, and a stale one (seen an hour or more ago) off.
os.environ.setdefault("HOST_OFFLINE_AFTER_SECONDS", "1200")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate  # noqa: E402

from accounts.models import Membership, Organisation, User  # noqa: E402
from hosts.models import Host, HostStatus, HostVisibility  # noqa: E402

QUERIES = {
    "default (ordering=price)": "",
    "online, -reliability": "online=true&ordering=-reliability",
    "x86_64, >=8 cpus, >=16 GB, price": "arch=x86_64&min_cpus=8&min_memory_mb=16384&ordering=price",
    "gpu, max price, gpu_price": "gpu=true&max_price_micros=60000&ordering=gpu_price",
    "accepting, linux, price,-reliability": "accepting=true&os=linux&ordering=price,-reliability",
    # the web app's other orderings (frontend/src/pages/Catalog.tsx), online only as it asks
    "online, -price": "online=true&ordering=-price",
    "online, -cpus": "online=true&ordering=-cpus",
    "online, -memory": "online=true&ordering=-memory",
    "online, -last_seen": "online=true&ordering=-last_seen",
}
# Deep pages: the 21st, reached by following `next` 20 times, and by following `next` 21
# times and then `previous` (a mixed ordering read backwards).
DEEP = [
    ("page 21 of online by price", "online=true&ordering=price", False),
    (
        "page 21 by previous: accepting, linux",
        "accepting=true&os=linux&ordering=price,-reliability",
        True,
    ),
]


class Rollback(Exception):
    pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument(
        "--iterations", type=int, default=int(os.environ.get("BENCH_ITERATIONS", 100))
    )
    parser.add_argument("--explain", action="store_true", help="print each page query's plan")
    parser.add_argument("--layers", action="store_true", help="one page's cost by layer")
    args = parser.parse_args(argv)
    call_command("migrate", verbosity=0)
    if connection.vendor == "postgresql":  # earlier runs' rolled-back rows, out of the way
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE hosts_host")
    try:
        with transaction.atomic():
            renter = _populate(args.hosts)
            (_layers if args.layers else _run)(renter, args)
            raise Rollback
    except Rollback:
        pass


def _populate(count: int) -> User:
    rng = random.Random(7)
    owners = [
        User.objects.create(username=f"bench-owner-{i}", email=f"bench-owner-{i}@example.com")
        for i in range(100)
    ]
    organisations = [Organisation.objects.create(name=f"bench-org-{i}") for i in range(20)]
    renter = User.objects.create(username="bench-renter", email="bench-renter@example.com")
    Membership.objects.bulk_create(
        [Membership(organisation=org, user=renter) for org in organisations[:3]]
    )
    for start in range(0, count, 1000):
        now = timezone.now()  # each batch seen relative to when it is inserted
        batch = [_host(rng, now, owners, organisations) for _ in range(min(1000, count - start))]
        Host.objects.bulk_create(batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE hosts_host")
            cursor.execute("ANALYZE accounts_membership")
    return renter


def _host(
    rng: random.Random, now: Any, owners: list[User], organisations: list[Organisation]
) -> Host:
    status = rng.choices(
        [HostStatus.ONLINE, HostStatus.BUSY, HostStatus.DRAINING, HostStatus.OFFLINE],
        weights=[60, 10, 5, 25],
    )[0]
    fresh = status != HostStatus.OFFLINE and rng.random() > 0.05  # a few stale "online" rows
    seen = now - timedelta(seconds=rng.randint(0, 20) if fresh else rng.randint(3600, 86_400))
    gpu_count = rng.choice([1, 1, 2, 4, 8]) if rng.random() < 0.1 else 0
    is_private = rng.random() < 0.1
    tracked = rng.randint(3600, 90 * 86_400)
    return Host(
        owner=rng.choice(owners),
        name=f"bench-{rng.getrandbits(32):08x}",
        arch=rng.choices(["x86_64", "arm64"], weights=[80, 20])[0],
        os=rng.choices(["linux", "darwin", "windows"], weights=[85, 10, 5])[0],
        cpu_model="Bench CPU",
        cpus=rng.choice([2, 4, 8, 12, 16, 24, 32, 64, 128]),
        memory_mb=rng.choice([4096, 8192, 16384, 32768, 65536, 131072, 262144]),
        disk_free_mb=rng.randint(10_000, 2_000_000),
        gpus=[{"model": "NVIDIA RTX 4090", "memory_mb": 24564}] * gpu_count,
        gpu_count=gpu_count,
        docker_available=True,
        cpu_core_hour_micros=rng.randint(1_000, 80_000),
        memory_gb_hour_micros=rng.randint(100, 8_000),
        gpu_hour_micros=rng.randint(100_000, 2_000_000) if gpu_count else 0,
        status=status,
        is_available=rng.random() > 0.2,
        is_draining=status == HostStatus.DRAINING,
        last_seen_at=seen,
        visibility=HostVisibility.PRIVATE if is_private else HostVisibility.PUBLIC,
        organisation=rng.choice(organisations) if is_private else None,
        online_seconds=rng.randint(0, tracked),
        tracked_seconds=tracked,
        jobs_finished=rng.randint(0, 500),
        jobs_lost=rng.randint(0, 20),
    )


def _run(renter: User, args: argparse.Namespace) -> None:
    client = APIClient()
    client.force_authenticate(renter)
    print(
        f"catalog: {Host.objects.count()} hosts on {connection.vendor}, "
        f"{args.iterations} rounds per query (times in ms; api/sql is the ratio of the p99s)"
    )
    print(
        f"{'query':40} {'api p50':>8} {'api p99':>8} {'sql p50':>8} {'sql p99':>8} "
        f"{'api/sql':>8} {'old p50':>8} {'old p99':>8} {'stmts':>5}"
    )
    pages = [
        (label, f"/api/v1/hosts/?{query}", _numbered(query, 1)) for label, query in QUERIES.items()
    ]
    for label, query, back in DEEP:
        url = _walk(client, f"/api/v1/hosts/?{query}", 21 if back else 20)
        pages.append((label, _get(client, url)["previous"] if back else url, _numbered(query, 21)))
    calls: list[Any] = []
    statement_counts = []
    for label, url, old_url in pages:
        with CaptureQueriesContext(connection) as captured:
            body = _get(client, url)
        statements = [q["sql"] for q in captured.captured_queries]
        statement_counts.append(len(statements))
        old = _get(client, old_url)
        assert old["results"] == body["results"], f"{label}: the old page differs"
        calls += [
            lambda url=url: _fetch(client, url),
            lambda statements=statements: _replay(statements),
            lambda old_url=old_url: _fetch(client, old_url),
        ]
        if args.explain and connection.vendor == "postgresql":
            print(f"  {label}:")
            for sql in statements:
                _explain(sql)
    samples = _rounds(calls, args.iterations)
    for index, (label, _, _) in enumerate(pages):
        api, raw, numbered = samples[3 * index : 3 * index + 3]
        print(
            f"{label:40} {_p(api, 50):8.2f} {_p(api, 99):8.2f} {_p(raw, 50):8.2f} "
            f"{_p(raw, 99):8.2f} {_p(api, 99) / _p(raw, 99):8.1f} {_p(numbered, 50):8.2f} "
            f"{_p(numbered, 99):8.2f} {statement_counts[index]:5d}"
        )


LAYERS_QUERY = "online=true&ordering=-reliability"


def _layers(renter: User, args: argparse.Namespace) -> None:
    """One page's time through each layer in turn, beside its SQL replayed (the same rounds)."""
    from accounts.services import api_token_create
    from marketplace.apis import HostCatalogApi

    url = f"/api/v1/hosts/?{LAYERS_QUERY}"
    forced = APIClient()
    forced.force_authenticate(renter)
    _, key = api_token_create(user=renter, name="bench")
    token = APIClient()
    token.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    with CaptureQueriesContext(connection) as captured:
        _fetch(forced, url)
    statements = [q["sql"] for q in captured.captured_queries]
    factory = APIRequestFactory()
    view = HostCatalogApi.as_view()
    unthrottled = HostCatalogApi.as_view(throttle_classes=[])

    def direct(view: Any = view) -> None:
        request = factory.get(url)
        force_authenticate(request, renter)
        response = view(request)
        assert response.status_code == 200, response.status_code
        response.render()

    calls = {
        "request as the table times it (forced auth)": lambda: _fetch(forced, url),
        "request with an API token": lambda: _fetch(token, url),
        "view alone (no test client, no middleware)": direct,
        "view alone, no throttles": lambda: direct(unthrottled),
        "the page's SQL replayed": lambda: _replay(statements),
    }
    print(f"catalog layers: {Host.objects.count()} hosts, {LAYERS_QUERY}, {args.iterations} rounds")
    print(f"{'layer':48} {'p50':>8} {'p99':>8}")
    for label, taken in zip(calls, _rounds(list(calls.values()), args.iterations), strict=True):
        print(f"{label:48} {_p(taken, 50):8.2f} {_p(taken, 99):8.2f}")


def _numbered(query: str, page: int) -> str:
    return f"/api/v1/hosts/?{query}{'&' if query else ''}page={page}"


def _walk(client: APIClient, url: str, pages: int) -> str:
    """The URL of the page after following ``next`` ``pages`` times from ``url``."""
    for _ in range(pages):
        url = _get(client, url)["next"]
        assert url, "fewer pages than the deep page needs"
    return url


def _rounds(calls: list[Any], rounds: int) -> list[list[float]]:
    """Each call ``rounds`` times, taking turns (every query's three in each round), so a
    noisy moment hits them all alike."""
    for call in calls:
        call()  # warm up
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for call, taken in zip(calls, samples, strict=True):
            started = time.perf_counter()
            call()
            taken.append((time.perf_counter() - started) * 1000)
    return samples


def _get(client: APIClient, url: str) -> Any:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.json()


def _fetch(client: APIClient, url: str) -> None:
    """One request, as timed: the response is not parsed."""
    response = client.get(url)
    assert response.status_code == 200, response.status_code


def _replay(statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
            cursor.fetchall()


def _p(samples: list[float], percentile: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[percentile - 1]


def _explain(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        print(f"    -- {sql[:100]}…")
        for (line,) in cursor.fetchall():
            print(f"    {line}")


if __name__ == "__main__":
    main()
