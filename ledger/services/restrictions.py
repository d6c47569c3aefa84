"""What a user still owes after a refund or lost dispute: staff write it off."""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from accounts.models import User
from config.errors import NotFound, PermissionDenied
from ledger.models import AccountRestriction


def restriction_lift(*, restriction_id: int, staff_user: User) -> AccountRestriction:
    """Staff write off what a restricted user still owes: the restriction is lifted, the loss
    stays booked in platform_loss. No money moves. Locks the restriction row, in the caller's
    transaction."""
    assert connection.in_atomic_block, "restriction_lift runs inside the caller's transaction"
    if not (staff_user.is_active and staff_user.is_staff):
        raise PermissionDenied("only staff may lift a restriction", code="staff_required")
    restriction = AccountRestriction.objects.select_for_update().filter(pk=restriction_id).first()
    if restriction is None:
        raise NotFound(f"restriction {restriction_id} does not exist", code="not_found")
    if restriction.lifted_at is None:
        restriction.lifted_at = timezone.now()
        restriction.lifted_by = staff_user
        restriction.save(update_fields=["lifted_at", "lifted_by"])
    return restriction
