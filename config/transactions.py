"""One durable transaction per entry point (docs/architecture.md, "Transactions").

The edges of the system — an API view that moves money, a Celery task, an agent message
handler — open the one transaction their work runs in; the services they call (the ledger's
included) join it and never open their own. ``durable`` is that edge:

    @durable
    def job_cancel_view(...): ...

    durable_call(job_settle, job_id=7)

It runs the function in ``transaction.atomic(durable=True)`` (which refuses to nest, so a
service can never be called as an edge by mistake) and runs it again, whole, when PostgreSQL
aborts it as a deadlock or serialization victim: nothing of the aborted run remains, and every
money posting is idempotent by its key, so the rerun is safe. Slow I/O (a channel-layer send,
an HTTP call to Stripe) belongs after the commit: ``transaction.on_commit``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import OperationalError, transaction

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# PostgreSQL's deadlock_detected and serialization_failure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
ATTEMPTS = 3


def is_retryable(error: BaseException) -> bool:
    """A deadlock or serialization victim: the database aborted the transaction, not the code."""
    cause = error.__cause__
    return isinstance(error, OperationalError) and (
        getattr(cause, "sqlstate", None) in RETRYABLE_SQLSTATES
    )


def durable_call(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` as one durable transaction, retrying a deadlock victim."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with transaction.atomic(durable=True):
                return fn(*args, **kwargs)
        except OperationalError as error:
            if attempt == ATTEMPTS or not is_retryable(error):
                raise
            logger.info("%s: retrying after %s (attempt %d)", fn.__qualname__, error, attempt)
    raise AssertionError("unreachable")


def durable(fn: Callable[P, T]) -> Callable[P, T]:
    """Decorate an entry point: each call is one durable transaction (see ``durable_call``)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return durable_call(fn, *args, **kwargs)

    return wrapper
