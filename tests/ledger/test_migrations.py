"""Ledger 0005 / payments 0002 move AccountRestriction into the ledger core: the rows stay."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from ledger.models import AccountRestriction
from ledger.selectors import user_is_restricted

BEFORE = [("ledger", "0004_transaction_host_id"), ("payments", "0001_initial")]


@pytest.mark.django_db(transaction=True)
def test_moving_the_restriction_model_keeps_its_rows() -> None:
    # given: the schema before the move, with a restriction in it
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    user = old.get_model("accounts", "User").objects.create(username="moved")
    payment = old.get_model("payments", "Payment").objects.create(
        user_id=user.pk, amount_micros=5_000_000, provider="demo", refunded_micros=5_000_000
    )
    old.get_model("payments", "AccountRestriction").objects.create(
        user_id=user.pk,
        payment_id=payment.pk,
        reason="refund",
        shortfall_micros=3_000_000,
        recovered_micros=1_000_000,
    )

    # when
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    # then: the same row, now the ledger's model, still restricts the user
    restriction = AccountRestriction.objects.get()
    assert (restriction.user_id, restriction.payment_id, restriction.reason) == (
        user.pk,
        payment.pk,
        "refund",
    )
    assert restriction.outstanding_micros == 2_000_000
    assert user_is_restricted(user.pk)
