"""Request (``…Input``) and response (``…Output``) shapes of the payments API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from config.api import MicrosField
from ledger.payments.models import Payment, Payout


class AmountInput(serializers.Serializer[Any]):
    amount_micros = MicrosField(min_value=1)


class PaymentOutput(serializers.ModelSerializer[Payment]):
    class Meta:
        model = Payment
        fields = [
            "id",
            "amount_micros",
            "status",
            "provider",
            "provider_payment_id",
            "refunded_micros",
            "disputed_micros",
            "created_at",
            "credited_at",
        ]
        read_only_fields = fields


class CheckoutOutput(PaymentOutput):
    """The payment plus what the page needs to take it (Stripe.js: the client secret)."""

    client_secret = serializers.CharField(allow_null=True)
    publishable_key = serializers.CharField(allow_null=True)

    class Meta(PaymentOutput.Meta):
        fields = [*PaymentOutput.Meta.fields, "client_secret", "publishable_key"]
        read_only_fields = fields


class OnboardingOutput(serializers.Serializer[Any]):
    account_id = serializers.CharField()
    onboarding_status = serializers.CharField()
    url = serializers.CharField(allow_null=True)


class PayoutOutput(serializers.ModelSerializer[Payout]):
    class Meta:
        model = Payout
        fields = [
            "id",
            "amount_micros",
            "status",
            "stripe_transfer_id",
            "failure_reason",
            "created_at",
            "completed_at",
        ]
        read_only_fields = fields


class WebhookOutput(serializers.Serializer[Any]):
    received = serializers.BooleanField()
    outcome = serializers.CharField()
