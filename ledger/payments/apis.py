"""Buying credits, Stripe webhooks, Connect onboarding and payouts (docs/payments.md).

``Idempotency-Key`` on the two POSTs that create money-moving things is honoured twice over:
``@idempotent`` replays the first response, and the services store the key on the payment or
payout, so a retry after a failed first attempt (which ``@idempotent`` lets go of) reuses the
same row and so the same Stripe idempotency key.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from accounts.idempotency import HEADER as IDEMPOTENCY_HEADER
from accounts.idempotency import idempotent
from config.api import Pagination, validated
from ledger.payments import selectors
from ledger.payments.payouts import connected_account_onboard
from ledger.payments.purchases import payment_create
from ledger.payments.serializers import (
    AmountInput,
    CheckoutOutput,
    OnboardingOutput,
    PaymentOutput,
    PayoutOutput,
    WebhookOutput,
)
from ledger.payments.tasks import payout_start
from ledger.payments.webhooks import event_verify, stripe_event_process


def _idempotency_key(request: Request) -> str:
    """The header as ``@idempotent`` accepted it (absent, or 1 to 255 characters)."""
    return request.headers.get(IDEMPOTENCY_HEADER, "").strip()


class PaymentListApi(APIView):
    @extend_schema(
        summary="The user's credit purchases, newest first", responses=PaymentOutput(many=True)
    )
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(
            selectors.payments_of(request_user(request)), request, self
        )
        return paginator.get_paginated_response(PaymentOutput(page, many=True).data)

    @extend_schema(
        summary="Buy credits",
        description="Stripe: returns the PaymentIntent's `client_secret` and the publishable "
        "key for Stripe.js; the credits arrive with the verified webhook. Demo: paid and "
        "credited at once. 502 `payment_provider_error` when the provider fails.",
        request=AmountInput,
        responses={201: CheckoutOutput},
    )
    @idempotent()
    def post(self, request: Request) -> Response:
        data = validated(AmountInput, request)
        result = payment_create(
            user=request_user(request),
            amount_micros=data["amount_micros"],
            idempotency_key=_idempotency_key(request),
        )
        body = {
            **PaymentOutput(result.payment).data,
            "client_secret": result.checkout.client_secret,
            "publishable_key": result.checkout.publishable_key,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class StripeWebhookApi(APIView):
    """Stripe's deliveries: no session or token (the signature is the authentication), so no
    CSRF either, and no throttling (Stripe retries whatever is refused)."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()

    @extend_schema(
        summary="Stripe events (Stripe-Signature verified)",
        description="400 `invalid_signature` and nothing stored when the signature doesn't "
        "match the body; unknown event types are acknowledged and ignored.",
        request={"application/json": OpenApiTypes.OBJECT},
        responses=WebhookOutput,
        parameters=[
            OpenApiParameter("Stripe-Signature", OpenApiTypes.STR, OpenApiParameter.HEADER)
        ],
    )
    def post(self, request: Request) -> Response:
        event = event_verify(request.body, request.headers.get("Stripe-Signature"))
        outcome = stripe_event_process(event)
        return Response(WebhookOutput({"received": True, "outcome": outcome}).data)


class PayoutOnboardingApi(APIView):
    @extend_schema(
        summary="Connect a Stripe Express account for payouts",
        description="Creates the account on the first call; returns a fresh single-use "
        "onboarding link, or `url: null` once onboarding is complete.",
        request=None,
        responses=OnboardingOutput,
    )
    def post(self, request: Request) -> Response:
        onboarding = connected_account_onboard(user=request_user(request))
        body = {
            "account_id": onboarding.account.stripe_account_id,
            "onboarding_status": onboarding.account.onboarding_status,
            "url": onboarding.url,
        }
        return Response(OnboardingOutput(body).data)


class PayoutListApi(APIView):
    @extend_schema(summary="The owner's payouts, newest first", responses=PayoutOutput(many=True))
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(
            selectors.payouts_of(request_user(request)), request, self
        )
        return paginator.get_paginated_response(PayoutOutput(page, many=True).data)

    @extend_schema(
        summary="Pay out available earnings",
        description="Moves the amount out of available earnings at once and queues the Stripe "
        "transfer. 402 `insufficient_earnings`, 409 `payout_account_not_ready`, 403 "
        "`account_restricted`.",
        request=AmountInput,
        responses={201: PayoutOutput},
    )
    @idempotent()
    def post(self, request: Request) -> Response:
        data = validated(AmountInput, request)
        payout = payout_start(
            owner=request_user(request),
            amount_micros=data["amount_micros"],
            idempotency_key=_idempotency_key(request),
        )
        payout.refresh_from_db()
        return Response(PayoutOutput(payout).data, status=status.HTTP_201_CREATED)
