"""Celery tasks of payments: the transfer behind each payout, and the sweep that retries
transfers that stalled. They take primary keys and are safe to run any number of times.
``payout_start`` (the payout API's work) requests a payout and queues its transfer."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from celery.contrib.django.task import DjangoTask
from django.conf import settings
from django.db import IntegrityError

from accounts.models import User
from config.transactions import durable_call
from ledger.payments.models import Payout, PayoutStatus
from ledger.payments.money import payout_replayed, payout_request
from ledger.payments.payouts import payout_transfer, payouts_stalled
from ledger.payments.providers import ProviderError


@shared_task(
    base=DjangoTask,
    autoretry_for=(ProviderError,),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=10,
)
def payout_transfer_task(payout_id: int) -> str:
    """Transfer one payout. Only transient provider errors propagate (and are retried with
    the same idempotency key); a refusal reverses the payout inside ``payout_transfer``."""
    return str(payout_transfer(payout_id=payout_id).status)


@shared_task
def payouts_stalled_retry_task() -> int:
    """Queue the transfer of every payout still pending after PAYOUT_STALLED_AFTER_SECONDS."""
    stalled = payouts_stalled(older_than=timedelta(seconds=settings.PAYOUT_STALLED_AFTER_SECONDS))
    for payout_id in stalled:
        payout_transfer_task.delay(payout_id)
    return len(stalled)


def payout_start(*, owner: User, amount_micros: int, idempotency_key: str = "") -> Payout:
    """Request a payout (one durable transaction) and queue its transfer once it committed.

    A concurrent request with the same ``idempotency_key`` that won the insert makes this one's
    transaction fail on the unique key; it is then answered with that first payout.
    """
    try:
        payout = durable_call(
            payout_request,
            owner=owner,
            amount_micros=amount_micros,
            idempotency_key=idempotency_key,
        )
    except IntegrityError:
        replayed = payout_replayed(owner, idempotency_key, amount_micros)
        if replayed is None:
            raise
        payout = replayed
    if payout.status == PayoutStatus.PENDING:
        payout_transfer_task.delay_on_commit(payout.pk)
    return payout
