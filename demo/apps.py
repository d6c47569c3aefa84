from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The embedded demo (``make demo``): its seed data and its web process. No models."""

    name = "demo"
    default_auto_field = "django.db.models.BigAutoField"
