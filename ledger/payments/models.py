"""Payments, Stripe events, connected accounts and payouts.

These rows describe the outside world (what Stripe was asked and told us); the money itself
lives in the ledger, and only ``ledger.payments.money`` changes both together. What a user still
owes after a refund (``AccountRestriction``) is the ledger core's (``ledger.models``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"


class Payment(models.Model):
    """A purchase of credits. Credited to the wallet once, when the provider confirms it: the
    buyer's, or the organisation's it names."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payments"
    )
    # The organisation whose wallet the purchase funds (an admin of it bought: ``user``); None:
    # the buyer's own wallet (docs/pools.md, "The institution pays").
    organisation = models.ForeignKey(
        "accounts.Organisation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payments",
    )
    amount_micros = models.PositiveBigIntegerField()
    provider = models.CharField(max_length=16)
    provider_payment_id = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    # Taken back so far by refunds (Stripe's cumulative amount_refunded) and lost disputes.
    refunded_micros = models.PositiveBigIntegerField(default=0)
    disputed_micros = models.PositiveBigIntegerField(default=0)
    # The client's Idempotency-Key: the same key and amount returns this payment again.
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    credited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_payment_id"],
                condition=~Q(provider_payment_id=""),
                name="uniq_payment_provider_id",
            ),
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="uniq_payment_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(
                    refunded_micros__lte=F("amount_micros") - F("disputed_micros"),
                ),
                name="payment_reversed_within_amount",
            ),
        ]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"payment {self.pk} of {self.amount_micros} µcr ({self.status})"

    @property
    def reversed_micros(self) -> int:
        return self.refunded_micros + self.disputed_micros

    @property
    def provider_idempotency_key(self) -> str:
        return f"payment:{self.pk}"


class StripeEventOutcome(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored"


class StripeEvent(models.Model):
    """A verified Stripe event. The unique ``event_id`` makes processing exactly-once."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    outcome = models.CharField(
        max_length=16, choices=StripeEventOutcome.choices, default=StripeEventOutcome.RECEIVED
    )
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} ({self.outcome})"


class OnboardingStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    COMPLETE = "complete", "Complete"


class ConnectedAccount(models.Model):
    """A host owner's Stripe Express account (or the demo provider's stand-in)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="connected_account"
    )
    provider = models.CharField(max_length=16)
    stripe_account_id = models.CharField(max_length=255, unique=True)
    onboarding_status = models.CharField(
        max_length=16, choices=OnboardingStatus.choices, default=OnboardingStatus.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.stripe_account_id} ({self.onboarding_status})"


class PayoutStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"


class Payout(models.Model):
    """Earnings sent to a host owner's connected account.

    Requested: the amount moved earnings_available -> payouts_clearing at once. Paid: the
    transfer succeeded and the amount left the platform. Failed: it went back to
    earnings_available. The transfer's idempotency key is ``payout:<pk>``.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payouts"
    )
    connected_account = models.ForeignKey(
        ConnectedAccount, on_delete=models.PROTECT, related_name="payouts"
    )
    amount_micros = models.PositiveBigIntegerField()
    status = models.CharField(
        max_length=16, choices=PayoutStatus.choices, default=PayoutStatus.PENDING
    )
    stripe_transfer_id = models.CharField(max_length=255, blank=True, default="")
    # The client's Idempotency-Key: the same key and amount returns this payout again.
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    failure_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="uniq_payout_idempotency_key",
            ),
            models.CheckConstraint(condition=Q(amount_micros__gt=0), name="payout_positive"),
        ]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"payout {self.pk} of {self.amount_micros} µcr ({self.status})"

    @property
    def transfer_idempotency_key(self) -> str:
        return f"payout:{self.pk}"
