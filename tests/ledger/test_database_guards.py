"""The database's own guards: check constraints everywhere, triggers on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import IntegrityError, connection, transaction

from accounts.models import User
from ledger.models import Account, AccountKind, LedgerTransaction, Posting, TransactionKind
from ledger.services import wallet_credit
from tests.ledger.helpers import ledger_state

pytestmark = pytest.mark.django_db


@pytest.fixture
def purchase(alice: User) -> LedgerTransaction:
    return wallet_credit(user=alice, amount_micros=1_000, key="buy", reason="card payment")


def _change_and_check(change: Callable[[], object]) -> None:
    with transaction.atomic():
        change()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # Deferred constraint triggers fire here instead of at the (never reached)
                # commit of the test's transaction.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _refused_by_database(change: Callable[[], object], match: str) -> None:
    before = ledger_state()
    with pytest.raises(IntegrityError, match=match):
        _change_and_check(change)
    assert ledger_state() == before


def test_an_account_that_must_not_go_negative_cannot(purchase: LedgerTransaction) -> None:
    wallet = Account.objects.filter(kind=AccountKind.WALLET)
    _refused_by_database(lambda: wallet.update(balance_micros=-1), "ledger_account_not_negative")


def test_a_posting_of_zero_is_refused(purchase: LedgerTransaction) -> None:
    account = Account.objects.get(kind=AccountKind.WALLET)
    _refused_by_database(
        lambda: Posting.objects.create(transaction=purchase, account=account, amount_micros=0),
        "ledger_posting_amount_not_zero",
    )


@pytest.mark.postgres
@pytest.mark.parametrize("operation", ["update", "delete"])
def test_postgres_refuses_to_change_a_posting(purchase: LedgerTransaction, operation: str) -> None:
    postings = Posting.objects.filter(transaction=purchase)
    changes: dict[str, Callable[[], object]] = {
        "update": lambda: postings.update(amount_micros=5),
        "delete": postings.delete,
    }
    _refused_by_database(changes[operation], f"append-only: {operation.upper()} on ledger_posting")


@pytest.mark.postgres
@pytest.mark.parametrize("operation", ["update", "delete"])
def test_postgres_refuses_to_change_a_transaction(
    purchase: LedgerTransaction, operation: str
) -> None:
    txns = LedgerTransaction.objects.filter(pk=purchase.pk)

    # Deleting the transaction would first need its postings gone; the raw DELETE shows that
    # the transaction row itself is guarded too.
    def delete() -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM ledger_ledgertransaction WHERE id = %s", [purchase.pk])

    changes: dict[str, Callable[[], object]] = {
        "update": lambda: txns.update(memo="rewritten"),
        "delete": delete,
    }
    _refused_by_database(
        changes[operation], f"append-only: {operation.upper()} on ledger_ledgertransaction"
    )


@pytest.mark.postgres
def test_postgres_refuses_an_unbalanced_transaction(alice: User) -> None:
    # given
    wallet_credit(user=alice, amount_micros=1_000, key="buy", reason="card payment")
    wallet = Account.objects.get(kind=AccountKind.WALLET)

    def unbalanced() -> None:
        txn = LedgerTransaction.objects.create(key="bad", kind=TransactionKind.ADJUSTMENT)
        Posting.objects.create(transaction=txn, account=wallet, amount_micros=5)
        Posting.objects.create(transaction=txn, account=wallet, amount_micros=-4)

    # when / then
    _refused_by_database(unbalanced, "unbalanced: 2 postings summing to 1")


@pytest.mark.postgres
def test_postgres_refuses_a_transaction_without_postings() -> None:
    _refused_by_database(
        lambda: LedgerTransaction.objects.create(key="empty", kind=TransactionKind.ADJUSTMENT),
        "unbalanced: 0 postings summing to 0",
    )


@pytest.mark.postgres
def test_postgres_refuses_a_posting_added_to_an_older_transaction(
    purchase: LedgerTransaction,
) -> None:
    wallet = Account.objects.get(kind=AccountKind.WALLET)
    _refused_by_database(
        lambda: Posting.objects.create(transaction=purchase, account=wallet, amount_micros=1),
        "unbalanced: 3 postings summing to 1",
    )


@pytest.mark.postgres
def test_postgres_accepts_a_balanced_transaction(purchase: LedgerTransaction) -> None:
    # given: the service's own transaction, checked now instead of at commit
    # when
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    # then
    assert LedgerTransaction.objects.filter(pk=purchase.pk).exists()
