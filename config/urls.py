from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import healthz
from config.spa import RESERVED_PREFIXES, spa_index

api_v1 = [
    path("", include("accounts.urls")),
    path("", include("ledger.urls")),
    path("", include("ledger.payments.urls")),
    path("", include("hosts.urls")),
    path("", include("marketplace.urls")),
    path("", include("jobs.urls")),
    path("", include("blobs.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # The web app: last, so it never shadows the API, the admin or static files.
    re_path(rf"^(?!(?:{'|'.join(RESERVED_PREFIXES)})(?:/|$)).*$", spa_index, name="spa"),
]

# Errors outside DRF views (no URL matched, a crash in middleware) in the API's error format.
handler404 = "config.api.not_found"
handler500 = "config.api.server_error"
