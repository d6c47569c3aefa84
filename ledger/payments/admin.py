"""Read-only admin views of payments; the one action (lifting a restriction) goes through its
service. Money rows are never edited here: corrections are ledger transactions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import User
from config.transactions import durable_call
from ledger.models import AccountRestriction
from ledger.payments.models import (
    ConnectedAccount,
    Payment,
    Payout,
    StripeEvent,
)
from ledger.services import restriction_lift


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "amount_micros", "status", "provider", "created_at"]
    list_filter = ["status", "provider"]
    search_fields = ["provider_payment_id", "user__username", "user__email"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "outcome", "received_at", "processed_at"]
    list_filter = ["outcome", "type"]
    search_fields = ["event_id"]


@admin.register(ConnectedAccount)
class ConnectedAccountAdmin(ReadOnlyAdmin):
    list_display = ["user", "stripe_account_id", "onboarding_status", "created_at"]
    search_fields = ["stripe_account_id", "user__username"]


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = ["id", "owner", "amount_micros", "status", "stripe_transfer_id", "created_at"]
    list_filter = ["status"]
    search_fields = ["stripe_transfer_id", "owner__username"]


@admin.action(description="Lift (write off what is still owed)")
def restrictions_lift(
    modeladmin: AccountRestrictionAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> None:
    assert isinstance(request.user, User)
    for restriction in queryset.filter(lifted_at__isnull=True):
        durable_call(restriction_lift, restriction_id=restriction.pk, staff_user=request.user)
    messages.success(request, "Restrictions lifted.")


@admin.register(AccountRestriction)
class AccountRestrictionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "user",
        "reason",
        "shortfall_micros",
        "recovered_micros",
        "created_at",
        "lifted_at",
    ]
    list_filter = ["reason"]
    actions = [restrictions_lift]
