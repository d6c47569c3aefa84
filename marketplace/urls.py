from django.urls import URLPattern, URLResolver, path

from marketplace.quote_apis import QuoteApi

urlpatterns: list[URLPattern | URLResolver] = [
    path("quotes/", QuoteApi.as_view(), name="quote"),
]
