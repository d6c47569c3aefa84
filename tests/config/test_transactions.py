"""The entry points' transaction: deadlock and serialization victims run again, whole."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import OperationalError

from config.transactions import ATTEMPTS, durable, durable_call

pytestmark = pytest.mark.django_db


class _Cause(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _failing(sqlstate: str, times: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def post() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("aborted") from _Cause(sqlstate)
        return "posted"

    return calls, post


def test_a_deadlock_victim_is_run_again() -> None:
    # given: PostgreSQL aborts the first two attempts as deadlock victims
    calls, post = _failing("40P01", times=ATTEMPTS - 1)
    # when
    result = durable_call(post)
    # then
    assert (result, len(calls)) == ("posted", ATTEMPTS)


def test_deadlocks_give_up_after_the_last_attempt() -> None:
    calls, post = _failing("40P01", times=ATTEMPTS)
    with pytest.raises(OperationalError, match="aborted"):
        durable_call(post)
    assert len(calls) == ATTEMPTS


def test_other_database_errors_are_not_retried() -> None:
    calls, post = _failing("57014", times=1)  # query_canceled
    with pytest.raises(OperationalError, match="aborted"):
        durable_call(post)
    assert len(calls) == 1


def test_a_serialization_victim_is_run_again_through_the_decorator() -> None:
    calls, post = _failing("40001", times=1)
    assert durable(post)() == "posted"
    assert len(calls) == 2


def test_an_entry_point_cannot_run_inside_another() -> None:
    # durable=True refuses to nest: a service called as an edge by mistake fails loudly
    with pytest.raises(RuntimeError, match="durable"):
        durable_call(lambda: durable_call(lambda: "inner"))
