"""The accounts API: sign-up, log-in, personal API tokens, organisations (docs/api.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import login, logout
from django.db.models import QuerySet
from django.middleware.csrf import get_token
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from accounts import login as login_service
from accounts import selectors, services
from accounts.authentication import request_user
from accounts.models import ApiToken, Membership, User
from accounts.serializers import (
    ApiTokenCreatedOutput,
    ApiTokenInput,
    ApiTokenOutput,
    CsrfOutput,
    LoginInput,
    MemberInput,
    MemberOutput,
    MemberUpdateInput,
    OrganisationInput,
    OrganisationOutput,
    SessionOutput,
    SignupInput,
    UserOutput,
)
from config.api import validated

# Sign-up and log-in take the stricter "auth" rate per address on top of the usual anon/user
# rates, a token or not; log-in is also throttled per target account (accounts.login).
AUTH_THROTTLES = [AnonRateThrottle, UserRateThrottle, login_service.AuthAddressThrottle]


def _csrf_enforce_for_browsers(request: Request) -> None:
    """Sign-up and log-in start a session, so from a browser they need the CSRF token too.

    DRF checks CSRF only for requests that already have a session; without this, a hostile
    page could log a visitor into the attacker's account (login CSRF). Browsers send Origin
    on every cross-site POST; scripts send no Origin and simply get a token.
    """
    if "Origin" in request.headers:
        SessionAuthentication().enforce_csrf(request)


def _session_response(request: Request, user: User, created: bool) -> Response:
    login(request._request, user, backend="django.contrib.auth.backends.ModelBackend")
    token, plaintext = services.login_token_issue(user=user)
    body = SessionOutput({"user": user, "token": plaintext, "expires_at": token.expires_at}).data
    response = Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
    response.set_cookie(
        settings.LOGIN_DEVICE_COOKIE,
        login_service.device_cookie_value(user),
        max_age=settings.LOGIN_DEVICE_COOKIE_DAYS * 86400,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
        path="/api/v1/auth/",
    )
    return response


class SignupApi(APIView):
    permission_classes = [AllowAny]
    throttle_classes = AUTH_THROTTLES
    throttle_scope = "auth"

    @extend_schema(request=SignupInput, responses={201: SessionOutput}, auth=[])
    def post(self, request: Request) -> Response:
        """Create an account; logs the browser in and returns an API token (shown once)."""
        _csrf_enforce_for_browsers(request)
        data = validated(SignupInput, request)
        user = services.user_signup(
            username=data["username"], email=data["email"], password=data["password"]
        )
        return _session_response(request, user, created=True)


class LoginApi(APIView):
    permission_classes = [AllowAny]
    throttle_classes = AUTH_THROTTLES
    throttle_scope = "auth"

    @extend_schema(request=LoginInput, responses={200: SessionOutput}, auth=[])
    def post(self, request: Request) -> Response:
        """Log in with a password: starts a session and returns a new API token."""
        _csrf_enforce_for_browsers(request)
        data = validated(LoginInput, request)
        user = login_service.user_login(
            request=request._request,
            username=data["username"],
            password=data["password"],
            device_cookie=request.COOKIES.get(settings.LOGIN_DEVICE_COOKIE),
        )
        return _session_response(request, user, created=False)


class LogoutApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        """Revoke the token this request used (if any) and end the session."""
        if isinstance(request.auth, ApiToken):
            services.api_token_revoke(user=request_user(request), token_id=request.auth.pk)
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    @extend_schema(responses={200: UserOutput})
    def get(self, request: Request) -> Response:
        return Response(UserOutput(request_user(request)).data)


class CsrfApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: CsrfOutput}, auth=[])
    def get(self, request: Request) -> Response:
        """Set the ``csrftoken`` cookie; send its value back as ``X-CSRFToken``."""
        return Response(CsrfOutput({"csrf_token": get_token(request._request)}).data)


class ApiTokenListApi(generics.ListAPIView[ApiToken]):
    serializer_class = ApiTokenOutput

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return selectors.api_tokens_of(request_user(self.request))

    @extend_schema(request=ApiTokenInput, responses={201: ApiTokenCreatedOutput})
    def post(self, request: Request) -> Response:
        """Create a personal API token. The plaintext ``token`` is in this response only."""
        data = validated(ApiTokenInput, request)
        token, plaintext = services.api_token_create(
            user=request_user(request), name=data["name"], expires_at=data["expires_at"]
        )
        body = ApiTokenCreatedOutput(token, context={"plaintext": plaintext}).data
        return Response(body, status=status.HTTP_201_CREATED)


class ApiTokenDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, token_id: int) -> Response:
        """Revoke one of your tokens; it stops working at once."""
        services.api_token_revoke(user=request_user(request), token_id=token_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrganisationListApi(generics.ListAPIView[Membership]):
    serializer_class = OrganisationOutput

    def get_queryset(self) -> QuerySet[Membership]:
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        return selectors.memberships_of(request_user(self.request))

    @extend_schema(request=OrganisationInput, responses={201: OrganisationOutput})
    def post(self, request: Request) -> Response:
        """Create an organisation; you become its admin."""
        data = validated(OrganisationInput, request)
        membership = services.organisation_create(user=request_user(request), name=data["name"])
        return Response(OrganisationOutput(membership).data, status=status.HTTP_201_CREATED)


class OrganisationDetailApi(APIView):
    @extend_schema(responses={200: OrganisationOutput})
    def get(self, request: Request, organisation_id: int) -> Response:
        membership = selectors.membership_of(request_user(request), organisation_id)
        return Response(OrganisationOutput(membership).data)


class OrganisationMemberListApi(generics.ListAPIView[Membership]):
    serializer_class = MemberOutput

    def get_queryset(self) -> QuerySet[Membership]:
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        membership = selectors.membership_of(
            request_user(self.request), self.kwargs["organisation_id"]
        )
        return selectors.organisation_members(membership.organisation)

    @extend_schema(request=MemberInput, responses={201: MemberOutput})
    def post(self, request: Request, organisation_id: int) -> Response:
        """Add a member by username (organisation admins only)."""
        actor = request_user(request)
        organisation = selectors.membership_of(actor, organisation_id).organisation
        data: dict[str, Any] = validated(MemberInput, request)
        membership = services.organisation_member_add(
            actor=actor, organisation=organisation, username=data["username"], role=data["role"]
        )
        return Response(MemberOutput(membership).data, status=status.HTTP_201_CREATED)


class OrganisationMemberDetailApi(APIView):
    @extend_schema(request=MemberUpdateInput, responses={200: MemberOutput})
    def patch(self, request: Request, organisation_id: int, username: str) -> Response:
        """Change a member's role, steward flag or monthly cap (organisation admins only)."""
        actor = request_user(request)
        organisation = selectors.membership_of(actor, organisation_id).organisation
        data: dict[str, Any] = validated(MemberUpdateInput, request)
        membership, _ = services.organisation_member_update(
            actor=actor, organisation=organisation, username=username, changes=data
        )
        return Response(MemberOutput(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, organisation_id: int, username: str) -> Response:
        """Remove a member (organisation admins), or leave (your own username)."""
        actor = request_user(request)
        organisation = selectors.membership_of(actor, organisation_id).organisation
        services.organisation_member_remove(
            actor=actor, organisation=organisation, username=username
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
