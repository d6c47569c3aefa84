"""Read-only admin for the ledger, plus the one way staff move credits: ``credits_adjust``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from accounts.models import User
from config.errors import ServiceError
from config.transactions import durable_call
from ledger.models import Account, AccountKind, LedgerTransaction, Posting, ReconciliationRun
from ledger.money import MAX_AMOUNT_MICROS, credits_format
from ledger.services import credits_adjust

ADJUST_PERMISSION = "ledger.adjust_credits"

if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin[Any]
    PostingInlineBase = admin.TabularInline[Posting, LedgerTransaction]
else:  # the admin classes are not subscriptable at runtime
    ModelAdmin = admin.ModelAdmin
    PostingInlineBase = admin.TabularInline


class ReadOnlyAdmin(ModelAdmin):
    """Staff may look; nobody edits or deletes ledger rows through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CreditsAdjustForm(forms.Form):
    username = forms.CharField(max_length=150)
    # Bounded here as MicrosField bounds the API (config/api.py): the ledger's own limit,
    # ±MAX_AMOUNT_MICROS, so a typo is refused on the field before anything is posted.
    amount_micros = forms.IntegerField(
        min_value=-MAX_AMOUNT_MICROS,
        max_value=MAX_AMOUNT_MICROS,
        help_text=(
            "Micro-credits (1 credit = 1,000,000): positive adds, negative takes back; "
            f"at most {MAX_AMOUNT_MICROS} either way."
        ),
    )
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))
    # Generated when the form is shown, so a double submit posts one adjustment.
    key = forms.CharField(widget=forms.HiddenInput, max_length=200)

    def clean_amount_micros(self) -> int:
        amount = int(self.cleaned_data["amount_micros"])
        if amount == 0:
            raise forms.ValidationError("must not be zero: an adjustment moves credits")
        return amount

    def clean_username(self) -> User:
        username = self.cleaned_data["username"]
        user = User.objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError(f"no user {username!r}")
        return user


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "user",
        "organisation",
        "job_id",
        "shard",
        "balance",
        "must_not_be_negative",
    ]
    list_filter = ["kind", "must_not_be_negative"]
    search_fields = ["user__username", "organisation__name", "=job_id"]
    list_select_related = ["user", "organisation"]
    actions = ["adjust_selected_wallet"]
    change_list_template = "admin/ledger/account/change_list.html"

    @admin.display(description="balance", ordering="balance_micros")
    def balance(self, account: Account) -> str:
        return credits_format(account.balance_micros)

    def get_urls(self) -> list[URLPattern]:
        adjust = path(
            "adjust/",
            self.admin_site.admin_view(self.adjust_view),
            name="ledger_account_adjust",
        )
        return [adjust, *super().get_urls()]

    @admin.action(description="Grant or adjust credits of the selected user's wallet")
    def adjust_selected_wallet(
        self, request: HttpRequest, queryset: QuerySet[Account]
    ) -> HttpResponse | None:
        account = queryset.filter(kind=AccountKind.WALLET).select_related("user").first()
        if account is None or account.user is None:
            self.message_user(request, "Select a wallet account.", messages.WARNING)
            return None
        url = reverse("admin:ledger_account_adjust")
        return HttpResponseRedirect(f"{url}?username={account.user.username}")

    def adjust_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(ADJUST_PERMISSION):
            raise PermissionDenied
        if request.method == "POST":
            form = CreditsAdjustForm(request.POST)
            if form.is_valid():
                response = self._adjust(request, form)
                if response is not None:
                    return response
        else:
            initial = {"username": request.GET.get("username", ""), "key": _new_key()}
            form = CreditsAdjustForm(initial=initial)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "form": form,
            "title": "Grant or adjust credits",
        }
        return TemplateResponse(request, "admin/ledger/credits_adjust.html", context)

    def _adjust(self, request: HttpRequest, form: CreditsAdjustForm) -> HttpResponse | None:
        staff = request.user
        assert isinstance(staff, User)
        data = form.cleaned_data
        try:
            posted = durable_call(
                credits_adjust,
                user=data["username"],
                amount_micros=data["amount_micros"],
                reason=data["reason"],
                staff_user=staff,
                key=data["key"],
            )
        except ServiceError as error:
            form.add_error(None, error.message)
            return None
        self.message_user(
            request,
            f"{credits_format(data['amount_micros'])} for {data['username']}: {posted.key}",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:ledger_ledgertransaction_change", args=[posted.pk])
        )


def _new_key() -> str:
    return f"admin-adjust:{uuid.uuid4()}"


class PostingInline(PostingInlineBase):
    model = Posting
    fields = ["account", "amount_micros"]
    readonly_fields = ["account", "amount_micros"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "kind", "key", "job_id", "attempt", "memo", "created_by"]
    list_filter = ["kind"]
    search_fields = ["key", "=job_id", "memo"]
    date_hierarchy = "created_at"
    list_select_related = ["created_by"]
    inlines = [PostingInline]


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = ["id", "transaction", "account", "amount_micros"]
    list_filter = ["account__kind", "transaction__kind"]
    search_fields = ["transaction__key", "=account__job_id", "account__user__username"]
    list_select_related = ["transaction", "account"]


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "started_at",
        "mode",
        "reason",
        "is_clean",
        "problem_count",
        "postings_checked",
        "through_posting_id",
    ]
    list_filter = ["is_clean", "mode"]
