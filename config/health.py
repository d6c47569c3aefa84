"""``GET /healthz``: the load balancer's health check of one web process.

It answers from the process alone, touching neither PostgreSQL nor Redis: HAProxy asks every
second, and a check that failed when the shared database is down would take every web process
out at once (an outage the database already is, plus a load balancer with nothing behind it).
What it proves is what the balancer needs to know: this daphne accepts connections and its
event loop and Django answer.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("ok\n", content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response
