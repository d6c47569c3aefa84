"""Request and response shapes of the accounts API. No rules here: services hold them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from accounts.models import ApiToken, Membership, MembershipRole, User
from config.api import MicrosField


class UserOutput(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = ["id", "username", "email", "is_staff", "date_joined"]
        read_only_fields = fields


class SignupInput(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)


class LoginInput(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)


class SessionOutput(serializers.Serializer[Any]):
    """What sign-up and log-in return: the user and a fresh API token (shown once)."""

    user = UserOutput()
    token = serializers.CharField(help_text="API token for `Authorization: Token <token>`.")
    expires_at = serializers.DateTimeField()


class CsrfOutput(serializers.Serializer[Any]):
    csrf_token = serializers.CharField(help_text="Send back in the X-CSRFToken header.")


class ApiTokenOutput(serializers.ModelSerializer[ApiToken]):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at"]
        read_only_fields = fields


class ApiTokenCreatedOutput(ApiTokenOutput):
    token = serializers.SerializerMethodField(help_text="The plaintext token, shown only here.")

    class Meta(ApiTokenOutput.Meta):
        fields = [*ApiTokenOutput.Meta.fields, "token"]
        read_only_fields = fields

    def get_token(self, token: ApiToken) -> str:
        plaintext: str = self.context["plaintext"]
        return plaintext


class ApiTokenInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class OrganisationInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=120)


class OrganisationOutput(serializers.ModelSerializer[Membership]):
    """An organisation as one of its members sees it (with their own role)."""

    id = serializers.IntegerField(source="organisation.id")
    name = serializers.CharField(source="organisation.name")
    created_at = serializers.DateTimeField(source="organisation.created_at")

    class Meta:
        model = Membership
        fields = ["id", "name", "created_at", "role"]
        read_only_fields = fields


class MemberInput(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=MembershipRole.choices, default=MembershipRole.MEMBER)


class MemberUpdateInput(serializers.Serializer[Any]):
    """An admin's change of a member: any of these (docs/pools.md, "The model")."""

    role = serializers.ChoiceField(choices=MembershipRole.choices, required=False)
    is_steward = serializers.BooleanField(
        required=False, help_text="approves or refuses the release of the pool's outputs"
    )
    monthly_cap_micros = MicrosField(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="what the member may spend of the organisation's wallet per month; null: "
        "no cap of their own",
    )


class MemberOutput(serializers.ModelSerializer[Membership]):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["username", "role", "is_steward", "monthly_cap_micros", "created_at"]
        read_only_fields = fields
