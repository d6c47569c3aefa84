"""Periodic and queued work of the jobs app (see CELERY_BEAT_SCHEDULE): the edges that open
the transactions the services run in (``config.transactions.durable_call``).

The reaper runs every item it handles in a transaction of its own, so one bad job can't roll
back (or stop) the rest of the pass; the charges poster runs its batch in one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import shared_task
from celery.contrib.django.task import DjangoTask
from django.conf import settings
from django.utils import timezone

from config.transactions import durable_call
from jobs.billing import attempt_charges_reverse, job_settle
from jobs.billing import usage_charges_post as charges_post
from jobs.services.dispatch import (
    attempt_lose,
    attempts_unreversed,
    job_offer_next,
    jobs_queued,
    jobs_unsettled,
    leases_expired,
    offer_expire,
    offers_expired,
)
from jobs.services.groups import group_start_batch, groups_startable
from jobs.services.overrun import attempt_overrun_end, attempts_overrun
from jobs.services.releases import release_resend, releases_due

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReapReport:
    offers_expired: int
    attempts_lost: int
    jobs_offered: int
    jobs_settled: int
    attempts_reversed: int = 0
    attempts_overrun: int = 0
    groups_advanced: int = 0
    releases_sent: int = 0


def _each(step: Callable[..., Any], ids: list[int], **kwargs: Any) -> int:
    """Run ``step(pk)`` for each id, each in its own durable transaction; how many were truthy.
    A step that fails is logged and rolled back alone (the next pass tries it again)."""
    done = 0
    for pk in ids:
        try:
            done += bool(durable_call(step, pk, **kwargs))
        except Exception:
            logger.exception("reaper: %s(%s) failed; rolled back", step.__name__, pk)
    return done


def jobs_reap_pass(*, now: datetime | None = None) -> ReapReport:
    """One pass of the reaper: expire unanswered offers, lose expired leases, end attempts
    held past their cancel or timeout (``jobs.services.overrun``), offer queued jobs, settle
    finished jobs and reverse lost attempts a crash left behind, start the tasks of job groups
    that have room (``groups_startable``), send approved output releases again
    (``releases_due``). Safe to run concurrently and to repeat."""
    now = now or timezone.now()
    expired = _each(offer_expire, offers_expired(now), now=now)
    lost = _each(
        attempt_lose, leases_expired(now), reason="the host stopped renewing its lease", now=now
    )
    overrun = _each(attempt_overrun_end, attempts_overrun(now), now=now)
    offered = _each(job_offer_next, jobs_queued(now), now=now)
    settled = _each(job_settle, jobs_unsettled())
    reversed_ = _each(attempt_charges_reverse, attempts_unreversed())
    # Job groups with room whose background start (group_start) a lost worker left undone.
    groups = _each(group_start_batch, groups_startable())
    # Approved releases of pool outputs not carried yet: to the next online host of the pool.
    releases = _each(release_resend, releases_due(now=now), now=now)
    return ReapReport(expired, lost, offered, settled, reversed_, overrun, groups, releases)


@shared_task(name="jobs.tasks.jobs_reap", ignore_result=True)
def jobs_reap() -> None:
    """Expire unanswered offers, lose expired leases, offer queued jobs, settle holds."""
    jobs_reap_pass()


@shared_task(name="jobs.tasks.job_dispatch", ignore_result=True)
def job_dispatch(job_id: int) -> None:
    durable_call(job_offer_next, job_id)


@shared_task(base=DjangoTask, name="jobs.tasks.group_start", ignore_result=True)
def group_start(group_id: int) -> None:
    """Start a new job group's first tasks beyond those its create started, a batch of
    ``JOB_GROUP_START_BATCH`` per transaction, while it has room. Safe to repeat (the group's
    row lock and its rule decide); the reaper's pass does it too should this task be lost."""
    while durable_call(group_start_batch, group_id) == settings.JOB_GROUP_START_BATCH:
        pass  # a full batch: there may be room for more


@shared_task(name="jobs.tasks.usage_charges_post", ignore_result=True)
def usage_charges_post() -> int:
    """Post the usage charges of every attempt whose reports are ahead of its charges: one
    transaction for the batch."""
    return durable_call(charges_post, limit=settings.METERING_POST_BATCH).posted
