from django.urls import URLPattern, URLResolver, path

from ledger.payments import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("payments/", apis.PaymentListApi.as_view(), name="payments"),
    path("payments/stripe/webhook/", apis.StripeWebhookApi.as_view(), name="stripe-webhook"),
    path("payouts/", apis.PayoutListApi.as_view(), name="payouts"),
    path("payouts/onboarding/", apis.PayoutOnboardingApi.as_view(), name="payout-onboarding"),
]
