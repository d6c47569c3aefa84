"""Outputs kept on a pool's store, on their way to the renter (docs/pools.md, "Outputs leave
only when released"): the one state machine of ``JobOutput.release_status`` and every step of
it, each appended to the pool's audit trail in the same transaction.

    none -> requested            the renter asks, the pool has the airlock
    none -> approved             the renter asks, no airlock: approved by the pool's policy
    requested -> approved        a steward of the pool approves (not their own job's output)
    requested -> refused         a steward refuses, with a note; final for that output
    approved -> released         a pool host carried the bytes to the central store and their
                                 sha256 matched the digest the job reported (tus completion)

An approved output is sent to one online host of the pool (``output.release``); until its
upload completes the reaper (``releases_resend``) sends it again every
``JOB_RELEASE_RESEND_SECONDS``, to the next host of the pool in turn, so a host that can't read
the store, went away or sent wrong bytes does not hold the release up for good.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import Membership, MembershipRole, User
from accounts.selectors import membership_of
from agent.protocol import OutputRelease
from config.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from hosts.models import Host, HostStatus
from jobs import agent_link
from jobs.audit_models import AuditKind
from jobs.models import Job, JobOutput, OutputLocation, ReleaseStatus
from jobs.selectors import job_outputs
from jobs.services.audit import audit_append
from jobs.services.dispatch import pool_ref

MAX_NOTE_CHARS = 2000

# The one table of legal steps (from -> to).
_STEPS: dict[ReleaseStatus, frozenset[ReleaseStatus]] = {
    ReleaseStatus.NONE: frozenset({ReleaseStatus.REQUESTED, ReleaseStatus.APPROVED}),
    ReleaseStatus.REQUESTED: frozenset({ReleaseStatus.APPROVED, ReleaseStatus.REFUSED}),
    ReleaseStatus.APPROVED: frozenset({ReleaseStatus.RELEASED}),
    ReleaseStatus.REFUSED: frozenset(),
    ReleaseStatus.RELEASED: frozenset(),
}

_AUDIT_KIND = {
    ReleaseStatus.REQUESTED: AuditKind.RELEASE_REQUESTED,
    ReleaseStatus.APPROVED: AuditKind.RELEASE_APPROVED,
    ReleaseStatus.REFUSED: AuditKind.RELEASE_REFUSED,
    ReleaseStatus.RELEASED: AuditKind.OUTPUT_RELEASED,
}

POLICY_NOTE = "approved by the pool's policy: the pool has no airlock"


def _release_step(
    output: JobOutput,
    target: ReleaseStatus,
    *,
    actor: User | None,
    host_id: int | None = None,
    note: str = "",
    now: datetime,
    **fields: object,
) -> None:
    """Move ``output`` (locked by the caller) from its status to ``target`` with a conditional
    UPDATE, and append the step to its pool's audit trail."""
    source = ReleaseStatus(output.release_status)
    if target not in _STEPS[source]:
        raise Conflict(
            f"the release of {output.name} is {source}; it can't become {target}",
            code="release_state",
        )
    updated = JobOutput.objects.filter(pk=output.pk, release_status=source).update(
        release_status=target, **fields
    )
    if updated != 1:
        raise Conflict(f"the release of {output.name} changed meanwhile", code="release_state")
    output.refresh_from_db()
    pool_id = output.job.pool_id
    assert pool_id is not None
    audit_append(
        organisation_id=pool_id,
        kind=_AUDIT_KIND[target],
        actor=actor,
        job_id=output.job_id,
        host_id=host_id,
        detail={
            "output_id": output.pk,
            "name": output.name,
            "attempt": output.attempt.number,
            "size": output.size,
            "sha256": output.sha256,
            **({"note": note} if note else {}),
        },
    )


def _locked(queryset: QuerySet[JobOutput]) -> JobOutput | None:
    return queryset.select_for_update(of=("self",)).select_related("job", "attempt").first()


def _note_clean(note: object, *, is_required: bool) -> str:
    if not isinstance(note, str):
        raise ValidationFailed("note must be a string", fields={"note": ["Must be a string."]})
    text = note.strip()
    if len(text) > MAX_NOTE_CHARS:
        raise ValidationFailed(
            f"note is at most {MAX_NOTE_CHARS} characters",
            fields={"note": [f"At most {MAX_NOTE_CHARS} characters."]},
        )
    if is_required and not text:
        raise ValidationFailed(
            "a refusal needs a note saying why (the renter reads it)",
            fields={"note": ["Required when refusing."]},
        )
    return text


# --- the renter ---------------------------------------------------------------------------


def output_release_request(*, user: User, job_id: int, name: str) -> JobOutput:
    """The job's owner asks for an output kept on the pool's store. With the pool's airlock it
    waits for a steward (``requested``); without it, it is approved at once by the pool's
    policy and sent to a pool host. Asking again while requested, approved or released changes
    nothing; a refused output stays refused (409 ``release_refused``). Locks the output row."""
    job = Job.objects.filter(pk=job_id, owner=user).select_related("pool").first()
    if job is None:
        raise NotFound("No such job.")
    found = job_outputs(job).filter(name=name)
    output = _locked(JobOutput.objects.filter(pk__in=found.values("pk")))
    if output is None:
        raise NotFound("no such output")
    if not output_is_gated(output):
        raise Conflict(
            f"{name} is on the central store: download it, there is nothing to release",
            code="output_not_kept",
        )
    status = ReleaseStatus(output.release_status)
    if status == ReleaseStatus.REFUSED:
        raise Conflict(
            f"the release of {name} was refused by a steward ({output.release_note}); a refused "
            "output is never released: run the job again for new outputs",
            code="release_refused",
        )
    if status != ReleaseStatus.NONE:
        return output
    now = timezone.now()
    assert job.pool is not None
    if job.pool.pool_airlock:
        _release_step(
            output,
            ReleaseStatus.REQUESTED,
            actor=user,
            now=now,
            release_requested_by=user,
            release_requested_at=now,
        )
        return output
    _release_step(
        output,
        ReleaseStatus.APPROVED,
        actor=user,
        note=POLICY_NOTE,
        now=now,
        release_requested_by=user,
        release_requested_at=now,
        release_decided_at=now,
        release_note=POLICY_NOTE,
    )
    release_send(output, now=now)
    return output


def output_is_gated(output: JobOutput) -> bool:
    """The output reaches the renter only through a release: it is on the pool's store, or
    its pool has the airlock (with no store of its own the bytes are central but wait for a
    steward all the same)."""
    if output.location == OutputLocation.POOL:
        return True
    pool = output.job.pool
    return pool is not None and pool.pool_airlock


# --- the stewards -------------------------------------------------------------------------


def _reader(user: User, organisation_id: int) -> Membership:
    """Stewards and admins of the organisation read its releases (a non-member: 404)."""
    membership = membership_of(user, organisation_id)
    if not (membership.is_steward or membership.role == MembershipRole.ADMIN):
        raise PermissionDenied("only the organisation's data stewards and admins see releases")
    return membership


def releases_of(
    *, user: User, organisation_id: int, status: ReleaseStatus | None = None
) -> QuerySet[JobOutput]:
    """The outputs of the pool's jobs that were asked for (every status but ``none``), oldest
    request first; ``status`` narrows it."""
    _reader(user, organisation_id)
    found = JobOutput.objects.filter(job__pool_id=organisation_id)
    found = found.exclude(release_status=ReleaseStatus.NONE)
    if status is not None:
        found = found.filter(release_status=status)
    return found.select_related(
        "job", "attempt", "release_requested_by", "release_decided_by"
    ).order_by("release_requested_at", "pk")


def _decidable(user: User, organisation_id: int, release_id: int) -> JobOutput:
    """A requested release a steward of the organisation may decide (locked). A non-member:
    404; a member who is no steward (an admin too): 403; a steward's own job's output: 403
    ``own_output`` (four eyes: another steward decides)."""
    membership = membership_of(user, organisation_id)
    if not membership.is_steward:
        raise PermissionDenied("only the organisation's data stewards decide releases")
    output = _locked(
        JobOutput.objects.filter(pk=release_id, job__pool_id=organisation_id).exclude(
            release_status=ReleaseStatus.NONE
        )
    )
    if output is None:
        raise NotFound("no such release")
    if output.job.owner_id == user.pk:
        raise PermissionDenied(
            "a steward may not decide on their own job's output: another steward must",
            code="own_output",
        )
    if output.release_status != ReleaseStatus.REQUESTED:
        raise Conflict(
            f"the release of {output.name} is {output.release_status}, not requested",
            code="release_not_requested",
        )
    return output


def release_approve(
    *, user: User, organisation_id: int, release_id: int, note: object = ""
) -> JobOutput:
    """A steward approves a requested release: it is sent to an online pool host now (or by
    the reaper once one is online). Locks the output row."""
    output = _decidable(user, organisation_id, release_id)
    now = _decide(output, ReleaseStatus.APPROVED, user, _note_clean(note, is_required=False))
    release_send(output, now=now)
    return output


def release_refuse(
    *, user: User, organisation_id: int, release_id: int, note: object = ""
) -> JobOutput:
    """A steward refuses a requested release, saying why; the output stays on the pool's store
    and is never downloadable. Locks the output row."""
    output = _decidable(user, organisation_id, release_id)
    _decide(output, ReleaseStatus.REFUSED, user, _note_clean(note, is_required=True))
    return output


def _decide(output: JobOutput, status: ReleaseStatus, user: User, note: str) -> datetime:
    """A steward's decision on ``output``: the step, who decided, when and why; its time."""
    now = timezone.now()
    _release_step(
        output,
        status,
        actor=user,
        note=note,
        now=now,
        release_decided_by=user,
        release_decided_at=now,
        release_note=note,
    )
    return now


# --- the pool's hosts ---------------------------------------------------------------------


def release_host_pick(output: JobOutput) -> int | None:
    """The pool host to carry an approved output: the one that ran the attempt when it is
    online and was not the last one asked, else the next online host of the pool after the
    last one asked (in id order, wrapping round); None when no host of the pool is online."""
    pool_id = output.job.pool_id
    assert pool_id is not None
    online = list(
        Host.objects.filter(organisation_id=pool_id)
        .exclude(status=HostStatus.OFFLINE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not online:
        return None
    last = output.release_host_id
    if output.attempt.host_id in online and output.attempt.host_id != last:
        return output.attempt.host_id
    if last is None:
        return online[0]
    later = [pk for pk in online if pk > last]
    return later[0] if later else online[0]


def release_send(output: JobOutput, *, now: datetime) -> int | None:
    """Ask a pool host (after the commit) to carry an approved output to the central store;
    record whom and when. None (nothing sent) while no host of the pool is online. An output
    already on the central store (an airlock pool without a store of its own) is released at
    once: there is nothing to carry."""
    if output.location == OutputLocation.CENTRAL:
        if output.blob_id is not None:
            release_complete(output, host_id=None, blob_id=output.blob_id, now=now)
        return None
    pool = output.job.pool
    assert pool is not None
    store = pool_ref(pool).get("output_store")
    host_id = release_host_pick(output)
    if host_id is None or store is None:
        return None
    JobOutput.objects.filter(pk=output.pk, release_status=ReleaseStatus.APPROVED).update(
        release_host_id=host_id, release_sent_at=now
    )
    message = OutputRelease(
        release_id=output.pk,
        job_id=output.job_id,
        attempt=output.attempt.number,
        name=output.name,
        size=output.size,
        sha256=output.sha256,
        pool_id=pool.pk,
        store=store,
        key=output.store_key,
    )
    transaction.on_commit(lambda: agent_link.agent_send(host_id, "output.release", message))
    return host_id


def releases_due(*, now: datetime | None = None) -> list[int]:
    """Approved outputs never sent or sent more than JOB_RELEASE_RESEND_SECONDS ago."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.JOB_RELEASE_RESEND_SECONDS)
    return list(
        JobOutput.objects.filter(release_status=ReleaseStatus.APPROVED)
        .filter(Q(release_sent_at__isnull=True) | Q(release_sent_at__lt=stale))
        .order_by("pk")
        .values_list("pk", flat=True)[:500]
    )


def release_resend(output_id: int, *, now: datetime | None = None) -> int | None:
    """The reaper's step for one due release (its own transaction): send it again, to the next
    pool host. Locks the output row."""
    now = now or timezone.now()
    output = _locked(JobOutput.objects.filter(pk=output_id, release_status=ReleaseStatus.APPROVED))
    if output is None:
        return None
    return release_send(output, now=now)


def release_complete(
    output: JobOutput, *, host_id: int | None, blob_id: int, now: datetime
) -> None:
    """The approved output's bytes reached the central store with the digest the job reported
    (the tus upload checked it): the output is released and downloadable. The caller holds the
    output's row."""
    _release_step(
        output,
        ReleaseStatus.RELEASED,
        actor=None,
        host_id=host_id,
        now=now,
        blob_id=blob_id,
        released_at=now,
    )
