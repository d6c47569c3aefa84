"""Which payment provider serves a call: Stripe or the demo (docs/payments.md).

Apart from ``providers`` (the interface both implement), so that the implementations import
the interface and nothing imports back from them but this chooser.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ledger.payments.providers import PaymentProvider


def payment_provider(name: str | None = None) -> PaymentProvider:
    """The provider called ``name`` (default: ``PAYMENT_PROVIDER``).

    A payout names the provider its connected account was made with. Raises
    ImproperlyConfigured on an unknown name or a provider that may not load here.
    """
    name = name or settings.PAYMENT_PROVIDER
    if name == "stripe":
        from ledger.payments.stripe_provider import StripeProvider

        return StripeProvider()
    if name == "demo":
        from ledger.payments.demo_provider import DemoProvider

        return DemoProvider()
    raise ImproperlyConfigured(f"PAYMENT_PROVIDER must be 'stripe' or 'demo', got {name!r}")
