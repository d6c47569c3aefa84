"""The posting machinery's own edges: deadlock retries."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import OperationalError

from ledger.services.posting import DEADLOCK_ATTEMPTS, _durably

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
    calls, post = _failing("40P01", times=DEADLOCK_ATTEMPTS - 1)
    # when
    result = _durably(post)
    # then
    assert (result, len(calls)) == ("posted", DEADLOCK_ATTEMPTS)


def test_deadlocks_give_up_after_the_last_attempt() -> None:
    calls, post = _failing("40P01", times=DEADLOCK_ATTEMPTS)
    with pytest.raises(OperationalError, match="aborted"):
        _durably(post)
    assert len(calls) == DEADLOCK_ATTEMPTS


def test_other_database_errors_are_not_retried() -> None:
    calls, post = _failing("57014", times=1)  # query_canceled
    with pytest.raises(OperationalError, match="aborted"):
        _durably(post)
    assert len(calls) == 1
