"""Handlers for the job messages an agent sends on /ws/agent/.

Each handler takes the authenticated host's id and a decoded envelope, typed by its message
(agent/protocol.py has already checked every field and its bounds), and returns the replies to
send back, as ``(type, data)`` pairs. ``jobs.agent_socket`` runs each as one entry point: one
durable transaction per message (``config.transactions.durable_call``), rerun whole if the
database picks it as a deadlock victim; channel-layer sends wait for the commit. A handler
refuses by raising a ``config.errors.ServiceError`` (the agent gets ``error`` with its code).

Fencing, the same for every message about an attempt ``(job_id, attempt)``:

- the attempt must exist and have been offered to *this* host, else ``error not_your_job``
  and nothing changes (one host's credential can't speak for another host's job);
- a message that repeats what the server already has (an accept of an accepted attempt, a
  phase already reached, a log chunk or usage seq already stored, a finish already recorded)
  is a no-op, answered as the first one was (a usage report after the attempt finished is
  acknowledged with ``stop``);
- a message for a stale attempt (not the job's current attempt, or ended: lost, expired,
  rejected, cancelled) is refused with ``error stale_attempt`` *and* a ``job.cancel`` for that
  attempt, so the agent kills the container.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.protocol import (
    STALE_ATTEMPT_REASON_PREFIX,
    Envelope,
    Heartbeat,
    JobAccept,
    JobCancel,
    JobFinished,
    JobLog,
    JobReject,
    JobStarted,
    LogAck,
    RunningJobRef,
    Usage,
    UsageAck,
)
from hosts.services import host_report_flag
from jobs.models import AttemptStatus, JobAttempt
from jobs.services.attempts import (
    attempt_accept,
    attempt_budget_exhaust,
    attempt_finish,
    attempt_reject,
    attempt_start,
)
from jobs.services.dispatch import offers_open
from jobs.services.leases import heartbeat_leases, welcome_decide
from jobs.services.logs import log_append, log_kept_elsewhere
from jobs.services.usage import UsageRefused, usage_ingest, usage_ingest_fast
from jobs.services.usage_async import FastPath, usage_ingest_fast_async
from jobs.states import ATTEMPT_ACTIVE, ATTEMPT_FINISHED, IllegalTransition

Reply = tuple[str, dict[str, Any]]
Handler = Callable[[int, Envelope[Any]], list[Reply]]

# The agent may still send the tail of the log after it reported the job finished.
_LOGGABLE = ATTEMPT_ACTIVE | ATTEMPT_FINISHED


def _error(envelope: Envelope[Any], code: str, message: str) -> Reply:
    return ("error", {"code": code, "message": message, "ref_id": envelope["id"]})


def _not_yours(envelope: Envelope[Any], job_id: int, number: int) -> list[Reply]:
    return [
        _error(
            envelope, "not_your_job", f"job {job_id} attempt {number} was not offered to this host"
        )
    ]


def _stale(envelope: Envelope[Any], attempt: JobAttempt, why: str) -> list[Reply]:
    cancel = JobCancel(
        job_id=attempt.job_id,
        attempt=attempt.number,
        reason=f"{STALE_ATTEMPT_REASON_PREFIX}: {why}",
    )
    return [
        _error(
            envelope,
            "stale_attempt",
            f"job {attempt.job_id} attempt {attempt.number} is {why}: stop it",
        ),
        ("job.cancel", dict(cancel)),
    ]


def _attempt_of(host_id: int, job_id: int, number: int) -> JobAttempt | None:
    attempt = JobAttempt.objects.select_related("job").filter(job_id=job_id, number=number).first()
    if attempt is None or attempt.host_id != host_id:
        return None
    return attempt


def _staleness(attempt: JobAttempt, allowed: frozenset[AttemptStatus]) -> str | None:
    """Why the attempt can't take this message, or None."""
    if attempt.job.attempt != attempt.number:
        return f"superseded by attempt {attempt.job.attempt}"
    if attempt.status not in allowed:
        return str(attempt.status)
    return None


def _fenced(
    host_id: int, envelope: Envelope[Any], allowed: frozenset[AttemptStatus]
) -> tuple[JobAttempt | None, list[Reply]]:
    data = envelope["data"]
    attempt = _attempt_of(host_id, data["job_id"], data["attempt"])
    if attempt is None:
        return None, _not_yours(envelope, data["job_id"], data["attempt"])
    why = _staleness(attempt, allowed)
    if why is not None:
        return None, _stale(envelope, attempt, why)
    return attempt, []


def handle_job_accept(host_id: int, envelope: Envelope[JobAccept]) -> list[Reply]:
    data = envelope["data"]
    attempt = _attempt_of(host_id, data["job_id"], data["attempt"])
    if attempt is None:
        return _not_yours(envelope, data["job_id"], data["attempt"])
    if attempt.status in ATTEMPT_ACTIVE and attempt.job.attempt == attempt.number:
        return []
    attempt, refusal = _fenced(host_id, envelope, frozenset({AttemptStatus.OFFERED}))
    if attempt is None:
        return refusal
    try:
        attempt_accept(attempt)
    except IllegalTransition:
        attempt.refresh_from_db()
        return _stale(envelope, attempt, "no longer offered")
    return []


def handle_job_reject(host_id: int, envelope: Envelope[JobReject]) -> list[Reply]:
    data = envelope["data"]
    attempt = _attempt_of(host_id, data["job_id"], data["attempt"])
    if attempt is None:
        return _not_yours(envelope, data["job_id"], data["attempt"])
    if attempt.status in (AttemptStatus.REJECTED, AttemptStatus.EXPIRED):
        return []
    attempt, refusal = _fenced(host_id, envelope, frozenset({AttemptStatus.OFFERED}))
    if attempt is None:
        return refusal
    try:
        attempt_reject(attempt, data["reason"], data.get("code", "refused"))
    except IllegalTransition:
        return []
    return []


_PHASE_ORDER = {AttemptStatus.ACCEPTED: 0, AttemptStatus.PREPARING: 1, AttemptStatus.RUNNING: 2}


def handle_job_started(host_id: int, envelope: Envelope[JobStarted]) -> list[Reply]:
    data = envelope["data"]
    attempt, refusal = _fenced(host_id, envelope, ATTEMPT_ACTIVE)
    if attempt is None:
        return refusal
    reached = _PHASE_ORDER[AttemptStatus(attempt.status)]
    if reached >= _PHASE_ORDER[AttemptStatus(data["phase"])]:
        return []
    try:
        attempt_start(attempt, data["phase"])
    except IllegalTransition:
        attempt.refresh_from_db()
        return _stale(envelope, attempt, "no longer running here")
    return []


def handle_job_log(host_id: int, envelope: Envelope[JobLog]) -> list[Reply]:
    data = envelope["data"]
    attempt, refusal = _fenced(host_id, envelope, _LOGGABLE)
    if attempt is None:
        return refusal
    kept = log_kept_elsewhere(attempt.job)
    if kept:
        # The pool keeps the log off the server: an agent that sends it anyway is refused and
        # nothing is stored (an honest one declares only its size in job.finished).
        return [_error(envelope, "log_not_kept", f"this job's pool keeps its log: {kept}")]
    end = log_append(attempt.pk, data["offset"], data["data"])
    ack = LogAck(job_id=attempt.job_id, attempt=attempt.number, offset=end)
    return [("log.ack", dict(ack))]


def _usage_ack(attempt: JobAttempt, seq: int, *, stop: bool) -> Reply:
    return (
        "usage.ack",
        dict(UsageAck(job_id=attempt.job_id, attempt=attempt.number, seq=seq, stop=stop)),
    )


def handle_job_usage(host_id: int, envelope: Envelope[Usage]) -> list[Reply]:
    """Check and store the report, and acknowledge it at once (charging is batched: see
    jobs.billing). The next report of a running attempt is one statement (usage_ingest_fast);
    everything else is fenced and classified here. An impossible report is refused with
    ``error usage_refused``; when the reported usage costs the whole cap the server ends the
    job and says ``job.cancel``."""
    data = envelope["data"]
    fast = usage_ingest_fast(host_id, data)
    if fast is not None and not fast.is_cap_reached:
        ack = UsageAck(
            job_id=data["job_id"], attempt=data["attempt"], seq=data["seq"], stop=fast.stop
        )
        return [("usage.ack", dict(ack))]
    return handle_job_usage_decide(host_id, envelope)


def handle_job_usage_decide(host_id: int, envelope: Envelope[Usage]) -> list[Reply]:
    """A report the one-statement path did not take (it ran already, here or on the event
    loop): a repeat, a refusal, a stale attempt, the cap reached."""
    data = envelope["data"]
    attempt, refusal = _fenced(host_id, envelope, ATTEMPT_ACTIVE | ATTEMPT_FINISHED)
    if attempt is None:
        return refusal
    if attempt.status in ATTEMPT_FINISHED:
        # Reports after the end (the final one resent until job.finished is acknowledged, or
        # reports racing the server's budget stop) change nothing; the run is over.
        return [_usage_ack(attempt, data["seq"], stop=True)]
    try:
        verdict = usage_ingest(attempt, data)
    except UsageRefused as exc:
        return [_error(envelope, exc.code, exc.message)]
    replies = [_usage_ack(attempt, data["seq"], stop=verdict.stop)]
    if verdict.is_cap_reached and not data.get("is_final", False):
        cancel = attempt_budget_exhaust(attempt)
        if cancel is not None:
            replies.append(("job.cancel", dict(cancel)))
    return replies


async def handle_job_usage_fast(host_id: int, envelope: Envelope[Usage]) -> list[Reply] | Handler:
    """The next report of a running attempt, answered on the socket's event loop in one
    statement (jobs.services.usage_async). For anything else, the handler that decides:
    ``handle_job_usage_decide`` when the statement ran (it is not run twice), or the whole
    ``handle_job_usage`` when it could not run."""
    data = envelope["data"]
    verdict = await usage_ingest_fast_async(host_id, data)
    if verdict is FastPath.NOT_RUN:
        return HANDLERS["job.usage"]
    if verdict is None or verdict.is_cap_reached:
        return handle_job_usage_decide
    ack = UsageAck(
        job_id=data["job_id"], attempt=data["attempt"], seq=data["seq"], stop=verdict.stop
    )
    return [("usage.ack", dict(ack))]


def handle_job_finished(host_id: int, envelope: Envelope[JobFinished]) -> list[Reply]:
    data = envelope["data"]
    ack: Reply = ("ack", {"ack_id": envelope["id"]})
    attempt = _attempt_of(host_id, data["job_id"], data["attempt"])
    if attempt is None:
        return _not_yours(envelope, data["job_id"], data["attempt"])
    if attempt.status in ATTEMPT_FINISHED:
        return [ack]
    attempt, refusal = _fenced(host_id, envelope, ATTEMPT_ACTIVE)
    if attempt is None:
        return refusal
    try:
        refused = attempt_finish(attempt, data)
    except IllegalTransition:
        attempt.refresh_from_db()
        return _stale(envelope, attempt, "no longer running here")
    if refused is not None:
        return [_error(envelope, UsageRefused.default_code, refused), ack]
    return [ack]


def handle_heartbeat(host_id: int, envelope: Envelope[Heartbeat]) -> list[Reply]:
    """Renew the leases of what the agent runs; repeat pending and stale-attempt cancels."""
    return heartbeat_replies(heartbeat_leases({host_id: envelope["data"]["running_jobs"]})[host_id])


def heartbeat_replies(cancels: list[JobCancel]) -> list[Reply]:
    """The ``job.cancel`` replies to one heartbeat, each attempt once."""
    seen: set[tuple[int, int]] = set()
    replies: list[Reply] = []
    for cancel in cancels:
        ref = (cancel["job_id"], cancel["attempt"])
        if ref not in seen:
            seen.add(ref)
            replies.append(("job.cancel", dict(cancel)))
    return replies


def resume_decide(
    host_id: int, running_jobs: list[RunningJobRef]
) -> tuple[list[RunningJobRef], list[RunningJobRef], list[Reply]]:
    """For ``hello``: what to keep, what to kill, and the open offers to send again."""
    keep, kill = welcome_decide(host_id, running_jobs)
    return keep, kill, [("job.offer", dict(offer)) for offer in offers_open(host_id)]


# The messages in which the agent reports on an attempt it runs (its phase, its log, its usage,
# its end): one with a field out of bounds is a refused report, like an impossible usage report.
REPORTS = frozenset({"job.started", "job.log", "job.usage", "job.finished"})


def handle_report_malformed(host_id: int, job_id: int, number: int, reason: str) -> bool:
    """A report (``REPORTS``) that the socket refused at decode (``bad_field``: a number out of
    bounds, a wrong type) about an attempt offered to this host: flag the host with ``reason``,
    through the one flagging service (quarantine at ``HOST_QUARANTINE_FLAGS``, docs/hosts.md).
    Nothing else changes. True when flagged; a report naming no attempt of this host flags
    nothing (it is refused all the same)."""
    if not JobAttempt.objects.filter(job_id=job_id, number=number, host_id=host_id).exists():
        return False
    host_report_flag(host_id=host_id, reason=reason)
    return True


# The job messages jobs.agent_socket dispatches (hello and heartbeat it answers itself, with
# resume_decide and handle_heartbeat in the same transaction as the presence update).
HANDLERS: dict[str, Handler] = {
    "job.accept": handle_job_accept,
    "job.reject": handle_job_reject,
    "job.started": handle_job_started,
    "job.log": handle_job_log,
    "job.usage": handle_job_usage,
    "job.finished": handle_job_finished,
}
