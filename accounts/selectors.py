"""Reads for users, API tokens and organisations."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import ApiToken, Membership, Organisation, User
from config.errors import NotFound


def organisations_of(user: User) -> QuerySet[Organisation]:
    """The organisations ``user`` belongs to: the private host pools they may use."""
    return Organisation.objects.filter(memberships__user=user).order_by("name", "pk")


def memberships_of(user: User) -> QuerySet[Membership]:
    """``user``'s memberships with their organisations, by organisation name."""
    return (
        Membership.objects.filter(user=user)
        .select_related("organisation")
        .order_by("organisation__name", "pk")
    )


def membership_of(user: User, organisation_id: int) -> Membership:
    """``user``'s membership of one organisation; 404 for non-members, as for absent ones."""
    membership = (
        Membership.objects.filter(user=user, organisation_id=organisation_id)
        .select_related("organisation")
        .first()
    )
    if membership is None:
        raise NotFound("No such organisation.")
    return membership


def organisation_members(organisation: Organisation) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organisation=organisation)
        .select_related("user")
        .order_by("user__username")
    )


def api_tokens_of(user: User) -> QuerySet[ApiToken]:
    """``user``'s tokens that are not revoked (expired ones too), newest first."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by(
        "-created_at", "-pk"
    )
