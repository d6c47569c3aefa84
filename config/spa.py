"""Serves the web app: frontend/dist/index.html for every app route (React Router does the rest).

The build's assets live under /static/ (Vite's ``base``) and are served by whitenoise from
STATICFILES_DIRS / STATIC_ROOT, so this view only returns the page, with a small config
(payment provider, Stripe.js URL and key, limits) embedded as JSON for the app to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.html import json_script
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

# Paths the catch-all never answers: they belong to the API, the admin, static files, sockets.
RESERVED_PREFIXES = ("api", "admin", "static", "media", "ws", "healthz")

MISSING_BUILD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CommuniPute: web app not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>The web app is not built yet</h1>
<p>This server serves the React app from <code>frontend/dist/</code>, which does not exist.
Build it once with:</p>
<pre style="background:#f6f8fa;padding:1rem">make frontend</pre>
<p>(It needs Node 20+ and npm; it installs the packages, regenerates the API client and runs
<code>vite build</code>.) Then reload this page. The API itself works without it:
<a href="/api/docs/">/api/docs/</a>.</p>
</body></html>
"""


def page_user(request: HttpRequest) -> dict[str, Any] | None:
    """Who is logged in (the same fields as GET /api/v1/auth/me/), so that the app needs no
    request that fails for an anonymous visitor (a failed request is a console error)."""
    user = request.user
    if not user.is_authenticated:
        return None
    return {
        "id": user.pk,
        "username": user.get_username(),
        "email": getattr(user, "email", ""),
        "is_staff": user.is_staff,
    }


def page_config(request: HttpRequest) -> dict[str, Any]:
    """What the app needs before its first API call: only what the visitor may know."""
    return {
        "user": page_user(request),
        "payment_provider": settings.PAYMENT_PROVIDER,
        "stripe_publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        "stripe_js_url": settings.STRIPE_JS_URL if settings.PAYMENT_PROVIDER == "stripe" else None,
        "public_url": settings.PUBLIC_URL,
        "purchase_min_micros": settings.PURCHASE_MIN_MICROS,
        "purchase_max_micros": settings.PURCHASE_MAX_MICROS,
        "payout_min_micros": settings.PAYOUT_MIN_MICROS,
        "platform_fee_bps": settings.PLATFORM_FEE_BPS,
    }


def index_html() -> str | None:
    index = Path(settings.FRONTEND_DIST_DIR) / "index.html"
    try:
        return index.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


@require_safe
@ensure_csrf_cookie
def spa_index(request: HttpRequest, path: str = "") -> HttpResponse:
    """Every app route gets the same page; a missing build gets instructions (503)."""
    html = index_html()
    if html is None:
        return HttpResponse(MISSING_BUILD, status=503, content_type="text/html; charset=utf-8")
    config = json_script(page_config(request), element_id="cp-config")
    html = html.replace("</head>", f"{config}\n</head>", 1)
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    # The page names hashed asset files; it must never be cached past a deploy.
    response["Cache-Control"] = "no-cache"
    return response
