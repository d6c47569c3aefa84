from django.urls import URLPattern, URLResolver, path

from ledger import apis

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
        "admin/reports/billing/",
        apis.BillingReportApi.as_view(),
        name="admin-billing-report",
    ),
]
