"""Cancelling a job: at once while no host holds it, through the agent while one does."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from agent.protocol import JobCancel
from config.errors import Conflict
from jobs import agent_link, events
from jobs.billing import job_settle
from jobs.models import AttemptStatus, Job, JobAttempt, JobStatus
from jobs.selectors import job_of
from jobs.services.dispatch import capacity_offer
from jobs.states import (
    ACTIVE,
    FINAL,
    IllegalTransition,
    attempt_transition,
    job_status_event,
    job_transition,
)

CANCEL_REASON = "cancelled by the owner"


def job_cancel(*, user: User, job_id: int) -> Job:
    """Cancel the user's job.

    Queued or offered: cancelled now (an open offer is withdrawn and the host told), and the
    hold is released. Held by a host: the cancel is recorded and sent to the agent; it is
    repeated with every heartbeat reply (``cancels_pending``) until the agent reports the job
    finished, and then the job settles. Repeating a pending cancel changes nothing. Runs in
    the caller's transaction (the cancel view's, ``durable``); the host hears after commit.
    """
    job = job_of(user, job_id)
    if job.status in FINAL:
        raise Conflict("the job has already finished", code="job_finished")
    now = timezone.now()
    with transaction.atomic():
        try:
            job_transition(
                job,
                JobStatus.CANCELLED,
                CANCEL_REASON,
                expected_from=[JobStatus.QUEUED, JobStatus.OFFERED],
            )
        except IllegalTransition:
            notice = _cancel_request(job, now)
        else:
            notice = _offer_withdraw(job, now)
        if notice is not None:
            host_id, message = notice
            transaction.on_commit(lambda: agent_link.agent_send(host_id, "job.cancel", message))
        job_settle(job.pk)
    job.refresh_from_db()
    return job


def _offer_withdraw(job: Job, now: object) -> tuple[int, JobCancel] | None:
    offered = JobAttempt.objects.filter(job=job, status=AttemptStatus.OFFERED).first()
    if offered is None:
        return None
    attempt_transition(
        offered,
        AttemptStatus.CANCELLED,
        CANCEL_REASON,
        expected_from=[AttemptStatus.OFFERED],
        finished_at=now,
    )
    capacity_offer(offered.host_id)
    return offered.host_id, JobCancel(job_id=job.pk, attempt=offered.number, reason=CANCEL_REASON)


def _cancel_request(job: Job, now: object) -> tuple[int, JobCancel] | None:
    requested = Job.objects.filter(
        pk=job.pk, status__in=ACTIVE, cancel_requested_at__isnull=True
    ).update(cancel_requested_at=now)
    job.refresh_from_db()
    if job.status in FINAL:
        raise Conflict("the job has already finished", code="job_finished")
    if not requested or job.host_id is None:
        return None
    event = {**job_status_event(job), "type": "job.cancel_requested"}
    transaction.on_commit(lambda: events.job_event_push(job.pk, event))
    return job.host_id, JobCancel(job_id=job.pk, attempt=job.attempt, reason=CANCEL_REASON)
