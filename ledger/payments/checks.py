"""A start-up check: the configured payment provider can load.

The demo provider refuses to load in production (it gives credits away); this surfaces that
at ``manage.py check`` / ``migrate`` time instead of on the first purchase.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from ledger.payments.providers import demo_payments_allowed


@register()
def payment_provider_check(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[CheckMessage]:
    if settings.PAYMENT_PROVIDER == "demo" and not demo_payments_allowed():
        return [
            Error(
                "PAYMENT_PROVIDER=demo gives credits away and only loads with DEBUG on or "
                "DEMO_PAYMENTS_ENABLED=1.",
                hint="Set PAYMENT_PROVIDER=stripe and the STRIPE_* keys for a real deployment.",
                id="payments.E001",
            )
        ]
    if settings.PAYMENT_PROVIDER == "stripe":
        missing = [
            name
            for name in ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET")
            if not getattr(settings, name)
        ]
        if missing:
            return [
                Error(f"PAYMENT_PROVIDER=stripe needs {', '.join(missing)}", id="payments.E002")
            ]
    return []
