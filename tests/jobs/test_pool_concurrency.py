"""Pools under concurrency, real threads on PostgreSQL: one pool token joins one host."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from accounts.models import Membership, MembershipRole, Organisation
from config.errors import ServiceError
from config.transactions import durable_call
from hosts.models import Host
from hosts.pool_services import pool_token_issue
from jobs.audit_models import PoolAuditEvent
from jobs.services.pools import pool_host_join
from tests.hosts.factories import host_create

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_one_pool_token_sent_for_four_hosts_at_once_joins_exactly_one(alice, hana):
    # given: alice admins the lab; hana has four hosts and one token
    lab = Organisation.objects.create(name="lab")
    Membership.objects.create(organisation=lab, user=alice, role=MembershipRole.ADMIN)
    hosts = [host_create(hana, name=f"box-{n}") for n in range(4)]
    issued = pool_token_issue(actor=alice, organisation_id=lab.pk)
    barrier = threading.Barrier(len(hosts))
    outcomes: list[str] = []

    def join(host: Host) -> None:
        barrier.wait()
        try:
            durable_call(pool_host_join, owner=hana, host_id=host.pk, token=issued.token)
            outcomes.append("joined")
        except ServiceError as exc:
            outcomes.append(f"{exc.code}: {exc.fields['token'][0]}")
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=join, args=(host,)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert sorted(outcomes) == ["invalid_token: this pool token was already used"] * 3 + ["joined"]
    assert Host.objects.filter(organisation=lab).count() == 1
    assert PoolAuditEvent.objects.filter(kind="host.joined").count() == 1
