from django.urls import URLPattern, URLResolver, path

from ledger import apis, organisation_apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("wallet/", apis.WalletApi.as_view(), name="wallet"),
    path(
        "wallet/transactions/",
        apis.WalletTransactionsApi.as_view(),
        name="wallet-transactions",
    ),
    path("wallet/history/", apis.WalletHistoryApi.as_view(), name="wallet-history"),
    path("earnings/", apis.EarningsApi.as_view(), name="earnings"),
    path(
        "admin/reports/reconciliation/",
        apis.ReconciliationReportApi.as_view(),
        name="admin-reconciliation",
    ),
    path(
        "organisations/<int:organisation_id>/wallet/",
        organisation_apis.OrganisationWalletApi.as_view(),
        name="organisation-wallet",
    ),
    path(
        "organisations/<int:organisation_id>/wallet/me/",
        organisation_apis.OrganisationWalletMeApi.as_view(),
        name="organisation-wallet-me",
    ),
    path(
        "organisations/<int:organisation_id>/wallet/transactions/",
        organisation_apis.OrganisationWalletTransactionsApi.as_view(),
        name="organisation-wallet-transactions",
    ),
    path(
        "organisations/<int:organisation_id>/wallet/payments/",
        organisation_apis.OrganisationPaymentsApi.as_view(),
        name="organisation-wallet-payments",
    ),
    path(
        "organisations/<int:organisation_id>/reports/",
        organisation_apis.OrganisationReportApi.as_view(),
        name="organisation-report",
    ),
    path(
        "admin/reports/billing/",
        apis.BillingReportApi.as_view(),
        name="admin-billing-report",
    ),
]
