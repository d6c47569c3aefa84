"""Writes for hosts: enrollment, credentials, presence from the agent socket, owner settings.

Presence updates come from the agent consumer and are keyed by the connection that sent them:
``Host.connection_id`` names the one live socket, and an update from any other connection of
the same host changes nothing (it was replaced, or its credential was revoked).
"""

from __future__ import annotations

import functools
import json
import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, TypedDict

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Field
from django.utils import timezone

from accounts.models import Organisation, User
from accounts.tokens import PREFIX_LENGTH, secret_issue, secret_matches
from agent.protocol import (
    CLOSE_UNAUTHORIZED,
    AvailabilityPolicy,
    Heartbeat,
    Hello,
    Readiness,
)
from config.errors import NotFound, PermissionDenied, ServiceError, ValidationFailed
from config.sql import is_postgres, server_bound_cursor
from hosts.messaging import host_close, host_send
from hosts.models import (
    RATE_FIELDS,
    SPEC_FIELDS,
    EnrollmentToken,
    Host,
    HostCredential,
    HostStatus,
    HostVisibility,
)
from hosts.policy import policy_clean, policy_normalise
from hosts.specs import specs_clean

ENROLLMENT_TOKEN_KIND = "cpe"  # noqa: S105 (a prefix, not a secret)
CREDENTIAL_KIND = "cph"
MAX_RATE_MICROS = 10_000_000_000  # 10,000 credits per unit-hour: far above any real price
MIN_JOB_TIMEOUT_SECONDS = 60
MAX_JOB_TIMEOUT_SECONDS = 30 * 24 * 3600


class EnrollmentRefused(PermissionDenied):
    """Codes: enrollment_token_invalid, enrollment_token_expired, enrollment_token_used."""


class HostAuthenticationFailed(ServiceError):
    status_code = 401
    default_code = "host_credential_invalid"


# --- enrollment and credentials ----------------------------------------------------------------


@dataclass(frozen=True)
class EnrollmentIssued:
    token: str  # shown once
    expires_at: datetime
    command: str


@dataclass(frozen=True)
class HostRegistered:
    host: Host
    credential: str  # shown once, to the agent


def enrollment_create(
    *, owner: User, name: str = "", now: datetime | None = None
) -> EnrollmentIssued:
    """Mint a one-time enrollment token and the exact command the owner runs on the machine."""
    name = name.strip()
    if len(name) > 100:
        raise ValidationFailed("name is too long", fields={"name": ["at most 100 characters"]})
    now = now or timezone.now()
    issued = secret_issue(ENROLLMENT_TOKEN_KIND)
    expires_at = now + timedelta(seconds=settings.ENROLLMENT_TOKEN_TTL_SECONDS)
    EnrollmentToken.objects.create(
        owner=owner, prefix=issued.prefix, digest=issued.digest, name=name, expires_at=expires_at
    )
    command = shlex.join(
        [
            "communipute-agent",
            "enroll",
            "--server",
            settings.PUBLIC_URL,
            "--token",
            issued.plaintext,
        ]
    )
    return EnrollmentIssued(token=issued.plaintext, expires_at=expires_at, command=command)


def host_register(
    *, enrollment_token: str, specs: Any, name: str = "", now: datetime | None = None
) -> HostRegistered:
    """Exchange an enrollment token for a new host and its credential.

    The token is claimed with a conditional UPDATE (``used_at IS NULL`` and not expired), so
    of two concurrent registrations with one token exactly one creates a host.
    """
    now = now or timezone.now()
    token = EnrollmentToken.objects.filter(prefix=enrollment_token[:PREFIX_LENGTH]).first()
    if token is None or not secret_matches(enrollment_token, token.digest):
        raise EnrollmentRefused("unknown enrollment token", code="enrollment_token_invalid")
    cleaned = specs_clean(specs)
    with transaction.atomic():
        claimed = EnrollmentToken.objects.filter(
            pk=token.pk, used_at__isnull=True, expires_at__gt=now
        ).update(used_at=now)
        if claimed:
            host = Host(owner_id=token.owner_id, name=(token.name or name.strip() or "host")[:100])
            host.set_specs(cleaned)
            host.save()
            credential = secret_issue(CREDENTIAL_KIND)
            HostCredential.objects.create(
                host=host, prefix=credential.prefix, digest=credential.digest
            )
            EnrollmentToken.objects.filter(pk=token.pk).update(host=host)
            return HostRegistered(host=host, credential=credential.plaintext)
    token.refresh_from_db(fields=["used_at"])
    if token.used_at is not None:
        raise EnrollmentRefused(
            "this enrollment token was already used", code="enrollment_token_used"
        )
    raise EnrollmentRefused("this enrollment token has expired", code="enrollment_token_expired")


def host_authenticate(bearer: str) -> Host:
    """The host whose live (unrevoked) credential is ``bearer``; HostAuthenticationFailed else,
    also when staff deactivated the host's owner (as their API tokens stop working)."""
    credential = (
        HostCredential.objects.select_related("host")
        .filter(prefix=bearer[:PREFIX_LENGTH], revoked_at__isnull=True, host__owner__is_active=True)
        .first()
    )
    if credential is None or not secret_matches(bearer, credential.digest):
        raise HostAuthenticationFailed("invalid or revoked host credential")
    return credential.host


def credential_revoke(*, owner: User, host_id: int, now: datetime | None = None) -> int:
    """Revoke every live credential of the owner's host and disconnect its agent.

    Locks the host row. Returns how many credentials were revoked. The agent must enroll again.
    """
    now = now or timezone.now()
    with transaction.atomic():
        host = _owned_host_locked(owner, host_id)
        revoked = HostCredential.objects.filter(host=host, revoked_at__isnull=True).update(
            revoked_at=now
        )
        _presence_close(host, now)
        host.save(update_fields=_PRESENCE_FIELDS)
        host_close(host.pk, CLOSE_UNAUTHORIZED)
    return revoked


# --- presence (called by the agent consumer) ---------------------------------------------------


class Presence(Enum):
    CURRENT = "current"
    # current, and the host can now take work it could not before (available or ready again,
    # more slots): the caller offers queued jobs at once
    FREED = "freed"
    REPLACED = "replaced"  # another connection of this host took over
    REVOKED = "revoked"  # the host has no live credential any more


@dataclass(frozen=True)
class HelloAccepted:
    host_id: int
    is_draining: bool
    policy: AvailabilityPolicy


_PRESENCE_FIELDS = [
    "status",
    "last_seen_at",
    "online_seconds",
    "tracked_seconds",
    "connection_id",
    "is_available",
    "unavailable_reason",
]


def _connected_host_locked(host_id: int, connection_id: str) -> Host | None:
    """The host row, locked, while ``connection_id`` is still its live connection; None once
    a newer socket replaced it (or the host is gone)."""
    return Host.objects.select_for_update().filter(pk=host_id, connection_id=connection_id).first()


def host_connect(*, host_id: int) -> int:
    """A new socket of this host draws its connection number (the order of connections)."""
    with transaction.atomic():
        Host.objects.filter(pk=host_id).update(connection_seq=F("connection_seq") + 1)
        return int(Host.objects.values_list("connection_seq", flat=True).get(pk=host_id))


def _readiness_record(host: Host, readiness: Readiness | None, *, is_hello: bool) -> None:
    """Store the agent's self-check; a fault quarantine lifts when the agent says hello again
    reporting ready (restarted once its owner fixed the problem): a heartbeat never lifts it,
    so an agent that says ready while its jobs keep failing stays quarantined."""
    if readiness is None:
        return
    host.is_ready = readiness["ready"]
    host.not_ready_reason = "" if readiness["ready"] else readiness["reason"]
    host.isolation = readiness["isolation"]
    if readiness["ready"] and is_hello:
        host.fault_quarantined_at = None
        host.host_faults_in_row = 0


_SCHEDULING_FIELDS = [
    "slots",
    "is_ready",
    "not_ready_reason",
    "isolation",
    "fault_quarantined_at",
    "host_faults_in_row",
]


def host_hello(
    *,
    host_id: int,
    connection_id: str,
    hello: Hello,
    connection_seq: int | None = None,
    now: datetime | None = None,
) -> HelloAccepted | Presence:
    """Make ``connection_id`` the host's live connection and record the specs and state its
    agent reports; locks the host row.

    A connection becomes live by saying hello, not by connecting, and only if no socket that
    connected after it said hello first (``connection_seq``, from ``host_connect``; None: the
    next number). A handshake a stalled server serves late from its backlog, whose client has
    long gone, never replaces the socket the agent really uses: it says no hello, or one older
    than the live socket's.
    """
    specs = specs_clean(hello["specs"])
    now = now or timezone.now()
    with transaction.atomic():
        host = Host.objects.select_for_update().filter(pk=host_id).first()
        if (
            host is None
            or not HostCredential.objects.filter(host_id=host_id, revoked_at__isnull=True).exists()
        ):
            return Presence.REVOKED
        _presence_account(host, now)
        if connection_seq is None:
            host.connection_seq += 1
            connection_seq = host.connection_seq
        if connection_seq < host.live_connection_seq:
            return Presence.REPLACED
        host.connection_id = connection_id
        host.live_connection_seq = connection_seq
        host.set_specs(specs)
        host.agent_version = hello["agent_version"][:32]
        host.install_id = hello.get("install_id", host.install_id)
        host.slots = hello.get("slots", 1)
        readiness = hello.get("readiness") or Readiness(
            ready=True, reason="", isolation="docker" if specs["docker_available"] else "none"
        )
        _readiness_record(host, readiness, is_hello=True)
        host.is_available = hello["is_available"]
        host.unavailable_reason = ""
        host.status = _status_for(host, hello["is_draining"], len(hello["running_jobs"]))
        host.save(
            update_fields=[
                *_PRESENCE_FIELDS,
                *SPEC_FIELDS,
                *_SCHEDULING_FIELDS,
                "agent_version",
                "install_id",
                "connection_seq",
                "live_connection_seq",
            ]
        )
    return HelloAccepted(
        host_id=host.pk,
        is_draining=host.is_draining,
        policy=policy_normalise(host.availability_policy),
    )


@dataclass(frozen=True)
class HeartbeatSeen:
    """One heartbeat as the socket received it: which connection sent it, and when."""

    host_id: int
    connection_id: str
    heartbeat: Heartbeat
    seen_at: datetime


# What a heartbeat reads of the host row (locked) and, but for the first three, writes back.
_HEARTBEAT_READ = [
    "pk",
    "connection_id",
    "is_draining",
    "status",
    "last_seen_at",
    "online_seconds",
    "tracked_seconds",
    "is_available",
    "unavailable_reason",
    "slots",
    "is_ready",
    "not_ready_reason",
    "isolation",
]
_HEARTBEAT_WRITTEN = _HEARTBEAT_READ[3:]


def host_heartbeat(
    *, host_id: int, connection_id: str, heartbeat: Heartbeat, now: datetime | None = None
) -> Presence:
    """Record one heartbeat (presence, availability, busy/draining); locks the host row."""
    seen = HeartbeatSeen(host_id, connection_id, heartbeat, now or timezone.now())
    return hosts_heartbeat_record([seen])[(host_id, connection_id)]


def hosts_heartbeat_record(beats: list[HeartbeatSeen]) -> dict[tuple[int, str], Presence]:
    """Record the heartbeats of many hosts in one read and one write, whatever their number:
    a heartbeat is presence, and one statement per flush (jobs.heartbeat_batch) instead of a
    transaction per heartbeat is what lets one process serve thousands of idle agents.

    Locks the hosts' rows in pk order. Answers per (host, connection): a connection that is
    not its host's live one changes nothing and is answered REPLACED or REVOKED; a host that
    can take more work than before (available or ready again, more slots) is answered FREED.
    Of several heartbeats of one connection the last one seen counts (each carries the whole
    state).
    """
    latest = {
        (beat.host_id, beat.connection_id): beat
        for beat in sorted(beats, key=lambda beat: beat.seen_at)
    }
    answers: dict[tuple[int, str], Presence] = {}
    with transaction.atomic():
        rows = _heartbeat_rows_locked(sorted({host_id for host_id, _ in latest}))
        written: list[tuple[Any, ...]] = []
        for row in rows:
            beat = latest.get((row[0], row[1]))
            if beat is not None:
                values, answers[(row[0], row[1])] = _heartbeat_applied(row, beat)
                written.append((row[0], *values))
        _heartbeat_rows_write(written)
    for host_id, connection_id in latest.keys() - answers.keys():
        answers[(host_id, connection_id)] = _presence_lost(host_id)
    return answers


def _heartbeat_applied(
    row: tuple[Any, ...], beat: HeartbeatSeen
) -> tuple[tuple[Any, ...], Presence]:
    """The host's new presence columns (``_HEARTBEAT_WRITTEN``, in order) after ``beat``, and
    whether it freed capacity; ``row`` is the host as ``_HEARTBEAT_READ`` reads it, but for
    ``last_seen_at`` in whole seconds since the epoch (``_heartbeat_rows_locked``)."""
    _, _, is_draining, status, last_seen, online, tracked, was_available, reason, slots = row[:10]
    was_ready, not_ready_reason, isolation = row[10:]
    heartbeat = beat.heartbeat
    tracked_added, online_added = _uptime_added(last_seen, beat.seen_at, status)
    is_available = heartbeat["is_available"]
    reason = "" if is_available else heartbeat["unavailable_reason"][:200]
    new_status = _status_of(
        is_draining, heartbeat.get("is_draining", False), len(heartbeat["running_jobs"])
    )
    new_slots = heartbeat.get("slots", slots)
    is_ready = was_ready
    readiness = heartbeat.get("readiness")
    if readiness is not None:
        is_ready = readiness["ready"]
        not_ready_reason = "" if is_ready else readiness["reason"]
        isolation = readiness["isolation"]
    freed = (
        (is_available and not was_available) or (is_ready and not was_ready) or new_slots > slots
    )
    values = (
        new_status,
        beat.seen_at,
        online + online_added,
        tracked + tracked_added,
        is_available,
        reason,
        new_slots,
        is_ready,
        not_ready_reason,
        isolation,
    )
    return values, Presence.FREED if freed else Presence.CURRENT


def _heartbeat_rows_locked(host_ids: list[int]) -> list[tuple[Any, ...]]:
    """The hosts' rows as ``_HEARTBEAT_READ`` reads them (``last_seen_at`` as whole seconds
    since the epoch), locked in pk order: on PostgreSQL one ``= ANY(array)``, the array passed
    as one literal (not an IN list of a thousand placeholders compiled and quoted in Python)."""
    if not _is_postgres():
        locked = Host.objects.select_for_update().filter(pk__in=host_ids).order_by("pk")
        return [
            (*row[:4], None if row[4] is None else int(row[4].timestamp()), *row[5:])
            for row in locked.values_list(*_HEARTBEAT_READ)
        ]
    with server_bound_cursor() as cursor:
        cursor.execute(_heartbeat_lock_sql(), ["{" + ",".join(map(str, host_ids)) + "}"])
        return list(cursor.fetchall())


def _heartbeat_rows_write(rows: list[tuple[Any, ...]]) -> None:
    """Write the rows (pk, then ``_HEARTBEAT_WRITTEN``): on PostgreSQL one UPDATE from one JSON
    parameter (``json.dumps`` is C; psycopg dumps array parameters element by element in
    Python, which was most of a flush's CPU); elsewhere (SQLite, the demo's few hosts) one
    UPDATE per row."""
    if not rows:
        return
    if not _is_postgres():
        for pk, *values in rows:
            Host.objects.filter(pk=pk).update(**dict(zip(_HEARTBEAT_WRITTEN, values, strict=True)))
        return
    with server_bound_cursor() as cursor:
        cursor.execute(_heartbeat_sql(), [json.dumps(rows, default=datetime.isoformat)])


def _is_postgres() -> bool:
    return is_postgres()


def _heartbeat_fields() -> list[Field[Any, Any]]:
    fields: list[Field[Any, Any]] = []
    for name in _HEARTBEAT_READ:
        field = Host._meta.get_field("id" if name == "pk" else name)
        assert isinstance(field, Field)
        fields.append(field)
    return fields


@functools.cache
def _heartbeat_lock_sql() -> str:
    columns = [field.column for field in _heartbeat_fields()]
    columns[4] = f"floor(extract(epoch FROM {columns[4]}))::bigint"
    return (
        f"SELECT {', '.join(columns)} FROM {Host._meta.db_table} "  # noqa: S608  (our model's names)
        "WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE"
    )


@functools.cache
def _heartbeat_sql() -> str:
    """Built once: the columns and their types come from the model."""
    fields = _heartbeat_fields()[3:]
    assigned = ", ".join(f"{field.column} = v.{field.column}" for field in fields)
    values = ", ".join(
        f"(e->>{n + 1})::{field.db_type(connection)} AS {field.column}"
        for n, field in enumerate(fields)
    )
    return (
        f"UPDATE {Host._meta.db_table} AS h SET {assigned} "  # noqa: S608  (our model's names; values are parameters)
        f"FROM (SELECT (e->>0)::bigint AS id, {values} "
        "FROM json_array_elements(%s::json) AS e) AS v WHERE h.id = v.id"
    )


def host_disconnect(*, host_id: int, connection_id: str, now: datetime | None = None) -> bool:
    """Mark the host offline if ``connection_id`` was its live connection; locks the host row."""
    now = now or timezone.now()
    with transaction.atomic():
        host = _connected_host_locked(host_id, connection_id)
        if host is None:
            return False
        _presence_close(host, now)
        host.save(update_fields=_PRESENCE_FIELDS)
    return True


def hosts_mark_stale_offline(*, now: datetime | None = None) -> int:
    """Mark offline every host not heard from for HOST_OFFLINE_AFTER_SECONDS (the reaper).

    The time since the last heartbeat is not counted as online time: nobody knows it was.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.HOST_OFFLINE_AFTER_SECONDS)
    return (
        Host.objects.exclude(status=HostStatus.OFFLINE)
        .filter(last_seen_at__lt=cutoff)
        .update(status=HostStatus.OFFLINE)
    )


def host_job_outcome_record(*, host_id: int, is_finished: bool) -> None:
    """Count an attempt that ended on this host: finished (any end the agent reported) or lost.

    Feeds ``reliability_bps`` (a generated column); an F() update, so concurrent calls add up.
    """
    field = "jobs_finished" if is_finished else "jobs_lost"
    changes: dict[str, Any] = {field: F(field) + 1}
    if is_finished:
        changes["host_faults_in_row"] = 0
    Host.objects.filter(pk=host_id).update(**changes)


def host_fault_record(*, host_id: int, detail: str, now: datetime | None = None) -> None:
    """Count a host fault (the host could not prepare, start or supervise a job) and keep its
    engine detail for the owner; the HOST_FAULT_QUARANTINE-th in a row (no job finished in
    between) quarantines the host until its agent says hello again, ready (``host_hello``).
    F() updates, so concurrent faults add up."""
    now = now or timezone.now()
    Host.objects.filter(pk=host_id).update(
        host_faults=F("host_faults") + 1,
        host_faults_in_row=F("host_faults_in_row") + 1,
        last_fault_at=now,
        last_fault_detail=detail[:2000],
    )
    Host.objects.filter(
        pk=host_id,
        fault_quarantined_at__isnull=True,
        host_faults_in_row__gte=settings.HOST_FAULT_QUARANTINE,
    ).update(fault_quarantined_at=now)


def host_not_ready_mark(*, host_id: int, reason: str) -> None:
    """The agent said it can't run jobs now (a ``host_fault`` rejection): not ready, with its
    reason, until its next readiness report says otherwise."""
    Host.objects.filter(pk=host_id).update(is_ready=False, not_ready_reason=reason[:2000])


def host_report_flag(*, host_id: int, reason: str = "impossible_report") -> None:
    """Count an impossible or late report from this host's agent (``reason`` says which), for
    staff to review; at ``HOST_QUARANTINE_FLAGS`` the host is quarantined (no offers), with
    the reason shown to its owner and staff. Two F() updates: concurrent flags add up, and
    only the flag that reaches the threshold stamps the quarantine."""
    Host.objects.filter(pk=host_id).update(
        flagged_reports=F("flagged_reports") + 1, last_flag_reason=reason[:200]
    )
    threshold = settings.HOST_QUARANTINE_FLAGS
    Host.objects.filter(
        pk=host_id, quarantined_at__isnull=True, flagged_reports__gte=threshold
    ).update(
        quarantined_at=timezone.now(),
        quarantine_reason=f"{threshold} or more flagged reports from the agent; the last: {reason}"[
            :300
        ],
    )


def _presence_lost(host_id: int) -> Presence:
    if HostCredential.objects.filter(host_id=host_id, revoked_at__isnull=True).exists():
        return Presence.REPLACED
    return Presence.REVOKED


def _presence_account(host: Host, now: datetime) -> None:
    """Add the time since the last report to the uptime counters and stamp ``last_seen_at``."""
    last_seen = None if host.last_seen_at is None else int(host.last_seen_at.timestamp())
    tracked_added, online_added = _uptime_added(last_seen, now, host.status)
    host.tracked_seconds += tracked_added
    host.online_seconds += online_added
    host.last_seen_at = now


def _uptime_added(last_seen: int | None, now: datetime, status: str) -> tuple[int, int]:
    """The seconds a report at ``now`` adds to (tracked, online); ``last_seen``: the previous
    report's time in whole seconds since the epoch (its floor).

    Time while connected counts as online, up to HOST_OFFLINE_AFTER_SECONDS per report (a
    longer silence means the host was gone); every second since the host was first seen counts
    as tracked.
    """
    if last_seen is None:
        return 0, 0
    # Whole seconds between the floors of the two stamps: summed over many reports this
    # telescopes to the true span (truncating each gap would lose up to 1 s per report).
    gap = max(0, int(now.timestamp()) - last_seen)
    if status == HostStatus.OFFLINE:
        return gap, 0
    return gap, min(gap, settings.HOST_OFFLINE_AFTER_SECONDS)


def _presence_close(host: Host, now: datetime) -> None:
    if host.status != HostStatus.OFFLINE:
        _presence_account(host, now)
    host.status = HostStatus.OFFLINE
    host.connection_id = ""


def _status_for(host: Host, is_agent_draining: bool, running_jobs: int) -> str:
    return _status_of(host.is_draining, is_agent_draining, running_jobs)


def _status_of(is_owner_draining: bool, is_agent_draining: bool, running_jobs: int) -> str:
    if is_owner_draining or is_agent_draining:
        return HostStatus.DRAINING
    return HostStatus.BUSY if running_jobs else HostStatus.ONLINE


# --- the owner's settings ----------------------------------------------------------------------


class HostChanges(TypedDict, total=False):
    name: str
    cpu_core_hour_micros: int
    memory_gb_hour_micros: int
    gpu_hour_micros: int
    max_job_cpus: int
    max_job_memory_mb: int
    max_job_gpus: int
    max_job_timeout_seconds: int
    allow_network: bool
    visibility: str
    organisation_id: int | None
    availability_policy: Any
    is_draining: bool


def host_update(*, owner: User, host_id: int, changes: HostChanges) -> Host:
    """Apply the owner's changes (rates, limits, visibility, policy, drain) after validating all.

    Locks the host row. Rates apply to jobs placed from now on; running jobs keep the rates
    copied onto them. A drain or policy change is pushed to the agent after commit.
    """
    with transaction.atomic():
        host = _owned_host_locked(owner, host_id)
        was_draining, old_policy = host.is_draining, host.availability_policy
        _changes_apply(host, owner, changes)
        host.save()
        if host.is_draining != was_draining:
            host_send(host.pk, "drain", {"is_draining": host.is_draining})
        if host.availability_policy != old_policy:
            host_send(host.pk, "policy", policy_normalise(host.availability_policy))
    host.refresh_from_db()
    return host


def host_drain(*, owner: User, host_id: int, is_draining: bool = True) -> Host:
    """Stop (or resume) offering the host new work; its running jobs finish."""
    return host_update(owner=owner, host_id=host_id, changes={"is_draining": is_draining})


def _owned_host_locked(owner: User, host_id: int) -> Host:
    host = Host.objects.select_for_update().filter(pk=host_id, owner=owner).first()
    if host is None:
        raise NotFound("no such host")
    return host


def _changes_apply(host: Host, owner: User, typed_changes: HostChanges) -> None:
    changes: dict[str, Any] = dict(typed_changes)
    problems: dict[str, str] = {}
    if "name" in changes:
        host.name = changes["name"].strip()
        if not 1 <= len(host.name) <= 100:
            problems["name"] = "1 to 100 characters"
    for rate in RATE_FIELDS:
        if rate in changes:
            value = changes[rate]
            if not 0 <= value <= MAX_RATE_MICROS:
                problems[rate] = f"between 0 and {MAX_RATE_MICROS}"
            setattr(host, rate, value)
    problems.update(_limits_apply(host, changes))
    if "allow_network" in changes:
        host.allow_network = changes["allow_network"]
    problems.update(_visibility_apply(host, owner, changes))
    if "availability_policy" in changes:
        try:
            host.availability_policy = dict(policy_clean(changes["availability_policy"]))
        except ValidationFailed as exc:
            problems["availability_policy"] = exc.message
            problems.update({f"availability_policy.{k}": v for k, v in exc.fields.items()})
    if "is_draining" in changes:
        _drain_apply(host, changes["is_draining"])
    if problems:
        raise ValidationFailed("invalid host settings", fields=problems)


def _limits_apply(host: Host, changes: dict[str, Any]) -> dict[str, str]:
    problems: dict[str, str] = {}
    for name, ceiling in (
        ("max_job_cpus", host.cpus),
        ("max_job_memory_mb", host.memory_mb),
        ("max_job_gpus", host.gpu_count),
    ):
        if name in changes:
            value = changes[name]
            if not 0 <= value <= ceiling:
                problems[name] = f"between 0 (no limit beyond the specs) and {ceiling}"
            setattr(host, name, value)
    if "max_job_timeout_seconds" in changes:
        host.max_job_timeout_seconds = changes["max_job_timeout_seconds"]
        if not MIN_JOB_TIMEOUT_SECONDS <= host.max_job_timeout_seconds <= MAX_JOB_TIMEOUT_SECONDS:
            problems["max_job_timeout_seconds"] = (
                f"between {MIN_JOB_TIMEOUT_SECONDS} and {MAX_JOB_TIMEOUT_SECONDS}"
            )
    return problems


def _visibility_apply(host: Host, owner: User, changes: dict[str, Any]) -> dict[str, str]:
    """Public or private to the host's pool, within what the pool allows. The pool itself
    changes only with a pool token (``hosts.pool_services``): the owner may name it here, not
    another one, so no member can put a host into a pool on their own (docs/pools.md)."""
    if "visibility" not in changes and "organisation_id" not in changes:
        return {}
    visibility = changes.get("visibility", host.visibility)
    if changes.get("organisation_id", host.organisation_id) != host.organisation_id:
        return {
            "organisation": "a host joins an organisation's pool with a pool token from its "
            "admins: POST /api/v1/my/hosts/{id}/pool/"
        }
    if visibility not in (HostVisibility.PUBLIC, HostVisibility.PRIVATE):
        return {"visibility": "public or private"}
    if visibility == HostVisibility.PRIVATE and host.organisation_id is None:
        return {
            "organisation": "a private host is private to its pool: join one first "
            "(POST /api/v1/my/hosts/{id}/pool/ with a pool token)"
        }
    if visibility == HostVisibility.PUBLIC and host.organisation_id is not None:
        is_hidden = Organisation.objects.filter(pk=host.organisation_id, pool_hidden=True)
        if is_hidden.exists():
            return {"visibility": "the pool keeps its hosts hidden: leave it to go public"}
    host.visibility = visibility
    return {}


def _drain_apply(host: Host, is_draining: bool) -> None:
    host.is_draining = is_draining
    if is_draining and host.status in (HostStatus.ONLINE, HostStatus.BUSY):
        host.status = HostStatus.DRAINING
    elif not is_draining and host.status == HostStatus.DRAINING:
        # The next heartbeat says whether the agent is busy or drained locally.
        host.status = HostStatus.ONLINE
