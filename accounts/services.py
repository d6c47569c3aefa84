"""Writes for users, API tokens and organisations. Views call these and nothing else writes."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiToken, Membership, MembershipRole, Organisation, User
from accounts.pool_settings import pool_settings_clean, pool_settings_of
from accounts.tokens import secret_issue
from config.errors import Conflict, NotFound, PermissionDenied, ValidationFailed

# Names, not secrets.
API_TOKEN_KIND = "cpt"  # noqa: S105
LOGIN_TOKEN_NAME = "login"  # noqa: S105


def user_signup(*, username: str, email: str, password: str) -> User:
    """Create an active user after the password validators and uniqueness checks pass.

    Usernames and e-mail addresses are unique case-insensitively (``Alice`` blocks ``alice``);
    the database's unique constraints back this up against a concurrent sign-up. All problems
    are reported at once, keyed by field.
    """
    email = User.objects.normalize_email(email)
    fields = _user_duplicates(username=username, email=email)
    try:
        validate_password(password, user=User(username=username, email=email))
    except DjangoValidationError as exc:
        fields["password"] = list(exc.messages)
    if fields:
        code = "invalid" if "password" in fields else "duplicate"
        raise ValidationFailed(next(iter(fields.values()))[0], code=code, fields=fields)
    try:
        with transaction.atomic():
            return User.objects.create_user(username=username, email=email, password=password)
    except IntegrityError:
        fields = _user_duplicates(username=username, email=email)
        if fields:
            raise ValidationFailed(
                next(iter(fields.values()))[0], code="duplicate", fields=fields
            ) from None
        raise


def _user_duplicates(*, username: str, email: str) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    if User.objects.filter(username__iexact=username).exists():
        fields["username"] = ["A user with that username already exists."]
    if User.objects.filter(email__iexact=email).exists():
        fields["email"] = ["A user with that email address already exists."]
    return fields


def api_token_create(
    *, user: User, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Mint a personal API token; returns it with the plaintext, which is never stored."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed(
            "expires_at must be in the future.",
            fields={"expires_at": ["Must be in the future."]},
        )
    secret = secret_issue(API_TOKEN_KIND)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=secret.prefix, digest=secret.digest, expires_at=expires_at
    )
    return token, secret.plaintext


def login_token_issue(*, user: User) -> tuple[ApiToken, str]:
    """The token handed out by sign-up and log-in; it expires after LOGIN_TOKEN_TTL_SECONDS."""
    ttl = timedelta(seconds=settings.LOGIN_TOKEN_TTL_SECONDS)
    return api_token_create(user=user, name=LOGIN_TOKEN_NAME, expires_at=timezone.now() + ttl)


def api_token_revoke(*, user: User, token_id: int) -> None:
    """Revoke one of ``user``'s live tokens; someone else's or an already revoked one is 404."""
    revoked = ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked != 1:
        raise NotFound("No such token.")


def api_tokens_revoke(*, token_ids: list[int]) -> int:
    """Staff revoke any tokens (the admin action); returns how many were still live."""
    return ApiToken.objects.filter(pk__in=token_ids, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def organisation_create(*, user: User, name: str) -> Membership:
    """Create an organisation with ``user`` as its first admin; returns that membership."""
    name = name.strip()
    if Organisation.objects.filter(name__iexact=name).exists():
        raise ValidationFailed(
            "An organisation with that name already exists.",
            code="duplicate",
            fields={"name": ["An organisation with that name already exists."]},
        )
    try:
        with transaction.atomic():
            organisation = Organisation.objects.create(name=name)
            return Membership.objects.create(
                organisation=organisation, user=user, role=MembershipRole.ADMIN
            )
    except IntegrityError:
        raise ValidationFailed(
            "An organisation with that name already exists.",
            code="duplicate",
            fields={"name": ["An organisation with that name already exists."]},
        ) from None


def organisation_member_add(
    *, actor: User, organisation: Organisation, username: str, role: str = MembershipRole.MEMBER
) -> Membership:
    """An admin of ``organisation`` adds the user called ``username``.

    Takes the organisation's row lock, like every membership change, so that role checks and
    changes of one organisation happen one at a time.
    """
    with transaction.atomic():
        _organisation_lock_as_admin(actor=actor, organisation=organisation)
        member = User.objects.filter(username=username, is_active=True).first()
        if member is None:
            raise ValidationFailed(
                "No such user.", code="unknown_user", fields={"username": ["No such user."]}
            )
        membership, created = Membership.objects.get_or_create(
            organisation=organisation, user=member, defaults={"role": role}
        )
        if not created:
            raise Conflict(f"{username} is already a member.", code="already_member")
        return membership


def organisation_member_remove(*, actor: User, organisation: Organisation, username: str) -> None:
    """An admin removes a member, or a member leaves; the last admin cannot go.

    Takes the organisation's row lock (see organisation_member_add).
    """
    with transaction.atomic():
        if actor.username == username:
            _organisation_lock(organisation)
        else:
            _organisation_lock_as_admin(actor=actor, organisation=organisation)
        membership = (
            Membership.objects.filter(organisation=organisation, user__username=username)
            .select_related("user")
            .first()
        )
        if membership is None:
            raise NotFound(f"{username} is not a member.")
        admins = Membership.objects.filter(organisation=organisation, role=MembershipRole.ADMIN)
        if membership.role == MembershipRole.ADMIN and admins.count() == 1:
            raise Conflict("An organisation needs at least one admin.", code="last_admin")
        membership.delete()


Change = tuple[object, object]  # (old, new)


def pool_settings_update(
    *, actor: User, organisation: Organisation, changes: dict[str, object]
) -> dict[str, Change]:
    """An admin changes the pool's settings (API names, accounts.pool_settings); returns
    what changed, old -> new (nothing for a value sent unchanged). Every bad field refuses
    the whole change. Joins the caller's transaction; takes the organisation's row lock, like
    every membership change."""
    with transaction.atomic(savepoint=False):
        _organisation_lock_as_admin(actor=actor, organisation=organisation)
        organisation.refresh_from_db()
        before = pool_settings_of(organisation)
        after = pool_settings_clean(before, changes)
        changed = {k: (before[k], after[k]) for k in after if after[k] != before[k]}
        for name, (_, new) in changed.items():
            setattr(organisation, f"pool_{name}", new)
        if changed:
            organisation.save(update_fields=[f"pool_{name}" for name in changed])
        return changed


MEMBER_SETTINGS = ("role", "is_steward", "monthly_cap_micros")


def organisation_member_update(
    *, actor: User, organisation: Organisation, username: str, changes: dict[str, object]
) -> tuple[Membership, dict[str, Change]]:
    """An admin changes a member's ``role``, ``is_steward`` or ``monthly_cap_micros``
    (None: no cap of their own); returns the membership and what changed. The last admin
    can't become a member. Takes the organisation's row lock (see organisation_member_add)."""
    with transaction.atomic():
        _organisation_lock_as_admin(actor=actor, organisation=organisation)
        membership = (
            Membership.objects.filter(organisation=organisation, user__username=username)
            .select_related("user")
            .first()
        )
        if membership is None:
            raise NotFound(f"{username} is not a member.")
        admins = Membership.objects.filter(organisation=organisation, role=MembershipRole.ADMIN)
        is_demoted = changes.get("role", membership.role) != MembershipRole.ADMIN
        if membership.role == MembershipRole.ADMIN and is_demoted and admins.count() == 1:
            raise Conflict("An organisation needs at least one admin.", code="last_admin")
        changed: dict[str, Change] = {}
        for name in MEMBER_SETTINGS:
            if name in changes and changes[name] != getattr(membership, name):
                changed[name] = (getattr(membership, name), changes[name])
                setattr(membership, name, changes[name])
        if changed:
            membership.save(update_fields=list(changed))
        return membership, changed


def _organisation_lock(organisation: Organisation) -> None:
    list(Organisation.objects.select_for_update().filter(pk=organisation.pk).values_list("pk"))


def _organisation_lock_as_admin(*, actor: User, organisation: Organisation) -> None:
    _organisation_lock(organisation)
    is_admin = Membership.objects.filter(
        organisation=organisation, user=actor, role=MembershipRole.ADMIN
    ).exists()
    if not is_admin:
        raise PermissionDenied("Only an admin of this organisation can change its members.")
