from django.urls import URLPattern, URLResolver, path

from jobs import pool_apis

urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "organisations/<int:organisation_id>/pool/",
        pool_apis.PoolSettingsApi.as_view(),
        name="organisation-pool",
    ),
    path(
        "organisations/<int:organisation_id>/audit/",
        pool_apis.PoolAuditApi.as_view(),
        name="organisation-audit",
    ),
    path("my/hosts/<int:host_id>/pool/", pool_apis.MyHostPoolApi.as_view(), name="my-host-pool"),
]
