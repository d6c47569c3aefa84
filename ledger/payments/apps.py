from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    """Payments live inside the ledger package but keep their own app label and migrations,
    which run after the ledger's (they depend on its last migration)."""

    name = "ledger.payments"
    label = "payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ledger.payments import checks  # noqa: F401  (registers the system check)
