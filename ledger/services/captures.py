"""Usage charges in batches: many captures, of many jobs, in the caller's transaction.

``hold_capture`` is one charge, one transaction, one commit. Metering charges every running job
every second or so; posting those one by one costs a commit (and a lock round trip) each. A
batch locks every account it touches with one ``SELECT … ORDER BY id FOR NO KEY UPDATE`` (the
same pk order as every other posting, so batches and single posts can't deadlock), checks every
capture against what is left of its escrow, and writes all of them — transactions, postings and
balances — in one statement on PostgreSQL, then commits once. The writing, the checks and the one
replay check are the ledger writer's (``posting._post_many``, beside ``_post``); this module
turns captures into its transactions and its outcomes back into capture results.

Each capture is still its own ledger transaction with its own idempotency key, exactly as
``hold_capture`` would write it, and each is decided on its own: a capture whose key was posted
before with the same amounts is a replay (nothing written), with other amounts a conflict, one
that would overdraw its escrow or whose job has no hold is refused — the others go through.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from config.errors import ValidationFailed
from ledger.models import LedgerTransaction, TransactionKind
from ledger.money import FeeSplit, capture_validate
from ledger.services.holds import _id_validate
from ledger.services.posting import (
    Leg,
    Outcome,
    Planned,
    _key_validate,
    _post_many,
    earnings_pending_ref,
    escrow_ref,
    revenue_ref,
)


@dataclass(frozen=True)
class Capture:
    """One charge of a job's escrow, with the same meaning as ``hold_capture``'s arguments."""

    job_id: int
    attempt: int
    host_owner_id: int
    gross_micros: int
    fee_micros: int
    key: str
    # The host the attempt runs on (for per-host reports); recorded in the metadata.
    host_id: int | None = None
    # More facts for the transaction's metadata (metering: the cumulative totals it moves
    # between). Integers only; they may not replace the standard fields.
    details: Mapping[str, int] = field(default_factory=dict)


class CaptureOutcome(enum.StrEnum):
    POSTED = "posted"  # written by this call
    REPLAYED = "replayed"  # the key was posted before with the same amounts: nothing written
    CONFLICT = "conflict"  # the key was posted before with other amounts: nothing written
    REFUSED = "refused"  # more than what is left of the hold, or no hold: nothing written


@dataclass(frozen=True)
class CaptureResult:
    capture: Capture
    outcome: CaptureOutcome
    # The capture's transaction: the new one, or for a replay the first one.
    transaction_id: int | None = None
    # Why it was not posted: hold_exceeded, hold_not_found, transaction_key_reused.
    code: str = ""


# Runs inside the batch's transaction, after the postings are written: the caller records what
# was charged atomically with the charges (it must not write ledger tables). Raising rolls the
# whole batch back.

_STANDARD_METADATA = frozenset(
    {"job_id", "attempt", "host_owner_id", "host_id", "gross_micros", "fee_micros"}
)


@dataclass(frozen=True)
class _Planned:
    capture: Capture
    split: FeeSplit
    legs: tuple[Leg, ...]


def _plan(capture: Capture) -> _Planned:
    job = _id_validate(capture.job_id, "job_id")
    _id_validate(capture.attempt, "attempt")
    owner = _id_validate(capture.host_owner_id, "host_owner_id")
    if capture.host_id is not None:
        _id_validate(capture.host_id, "host_id")
    _key_validate(capture.key)
    if _STANDARD_METADATA & set(capture.details):
        raise ValidationFailed("details may not replace the standard metadata", code="invalid")
    split = capture_validate(capture.gross_micros, capture.fee_micros)
    escrow = escrow_ref(job)
    legs = (
        Leg(escrow, -split.gross_micros),
        Leg(earnings_pending_ref(owner), split.net_micros),
        Leg(revenue_ref(job), split.fee_micros),
    )
    return _Planned(capture, split, tuple(leg for leg in legs if leg.amount_micros))


def _transaction(planned: _Planned, now: datetime) -> LedgerTransaction:
    capture = planned.capture
    metadata: dict[str, int] = {
        "job_id": capture.job_id,
        "attempt": capture.attempt,
        "host_owner_id": capture.host_owner_id,
        "gross_micros": planned.split.gross_micros,
        "fee_micros": planned.split.fee_micros,
        **({} if capture.host_id is None else {"host_id": capture.host_id}),
        **capture.details,
    }
    return LedgerTransaction(
        key=capture.key,
        kind=TransactionKind.CAPTURE,
        memo="",
        created_at=now,
        job_id=capture.job_id,
        attempt=capture.attempt,
        host_id=capture.host_id,
        metadata=metadata,
    )


_OUTCOMES = {
    Outcome.POSTED: CaptureOutcome.POSTED,
    Outcome.REPLAYED: CaptureOutcome.REPLAYED,
    Outcome.CONFLICT: CaptureOutcome.CONFLICT,
    Outcome.REFUSED: CaptureOutcome.REFUSED,
}


def _captures_post(plans: Sequence[_Planned]) -> list[CaptureResult]:
    now = timezone.now()
    posted = _post_many([Planned(_transaction(planned, now), planned.legs) for planned in plans])
    results = [
        CaptureResult(planned.capture, _OUTCOMES[one.outcome], one.transaction_id, one.code)
        for planned, one in zip(plans, posted, strict=True)
    ]
    return results


def holds_capture_many(
    captures: Sequence[Capture],
) -> list[CaptureResult]:
    """Post many usage charges in the caller's transaction; one result per capture, in order.

    Each capture moves ``gross`` from its job's escrow to the host owner's pending earnings
    (``gross - fee``) and the job's revenue shard (``fee``), exactly like ``hold_capture``, and
    is idempotent by its own key. A capture that would overdraw its escrow (``hold_exceeded``;
    captures of one job are taken in the order given) or whose job has no hold
    (``hold_not_found``) is refused, one whose key was used before is a replay or a conflict;
    none of these stops the others. Raises
    ``ValidationFailed`` (nothing posted) for malformed captures or a key given twice. Moves
    money under row locks taken in pk order, all at once.
    """
    plans = [_plan(capture) for capture in captures]
    keys = [planned.capture.key for planned in plans]
    if len(set(keys)) != len(keys):
        raise ValidationFailed("a batch names the same key twice", code="invalid_key")
    if not plans:
        return []
    return _captures_post(plans)
