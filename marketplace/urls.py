from django.urls import URLPattern, URLResolver, path

from marketplace import apis
from marketplace.quote_apis import QuoteApi

urlpatterns: list[URLPattern | URLResolver] = [
    path("hosts/", apis.HostCatalogApi.as_view(), name="host-catalog"),
    path("hosts/<int:host_id>/", apis.HostListingApi.as_view(), name="host-listing"),
    path("quotes/", QuoteApi.as_view(), name="quote"),
]
