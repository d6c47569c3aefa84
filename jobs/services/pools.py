"""A pool's writes that the audit trail records (docs/pools.md): hosts joining and leaving,
its settings changing. Each joins the caller's transaction (the view's, durable), so the
change and its audit entry commit together or not at all."""

from __future__ import annotations

from typing import Any

from accounts.models import Organisation, User
from accounts.selectors import membership_of
from accounts.services import pool_settings_update
from hosts.models import Host
from hosts.pool_services import host_pool_join, host_pool_leave, pool_hosts_hide
from jobs.audit_models import AuditKind
from jobs.services.audit import audit_append


def pool_host_join(*, owner: User, host_id: int, token: str) -> Host:
    """The owner joins the host to the token's pool (``hosts.pool_services.host_pool_join``:
    the host row's lock, the token's claim); audited ``host.joined``."""
    host, organisation = host_pool_join(owner=owner, host_id=host_id, token=token)
    audit_append(
        organisation_id=organisation.pk,
        kind=AuditKind.HOST_JOINED,
        actor=owner,
        host_id=host.pk,
        detail={"host": host.name, "owner": owner.username, "visibility": host.visibility},
    )
    return host


def pool_host_leave(*, owner: User, host_id: int) -> Host:
    """The owner takes the host out of its pool (``host_pool_leave``: refused while it holds
    the pool's jobs); audited ``host.left``."""
    host, pool_id = host_pool_leave(owner=owner, host_id=host_id)
    audit_append(
        organisation_id=pool_id,
        kind=AuditKind.HOST_LEFT,
        actor=owner,
        host_id=host.pk,
        detail={"host": host.name, "owner": owner.username},
    )
    return host


def pool_settings_change(
    *, actor: User, organisation_id: int, changes: dict[str, Any]
) -> Organisation:
    """An admin changes the pool's settings (non-member 404, member 403, a bad field 400 and
    nothing changed); audited ``pool.settings_changed`` with each change, old -> new. Hiding
    the pool makes its public hosts private to it in the same transaction. Takes the
    organisation's row lock (``accounts.services.pool_settings_update``)."""
    organisation = membership_of(actor, organisation_id).organisation
    changed = pool_settings_update(actor=actor, organisation=organisation, changes=changes)
    if changed.get("hidden", (None, False))[1] is True:
        pool_hosts_hide(organisation_id=organisation.pk)
    if changed:
        audit_append(
            organisation_id=organisation.pk,
            kind=AuditKind.SETTINGS_CHANGED,
            actor=actor,
            detail={"changes": {k: {"old": old, "new": new} for k, (old, new) in changed.items()}},
        )
    return organisation
