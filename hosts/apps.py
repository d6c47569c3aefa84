from django.apps import AppConfig


class HostsConfig(AppConfig):
    name = "hosts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hosts.selectors import host_labels
        from ledger.providers import providers

        providers.host_labels = host_labels  # host names in billing reports (docs/ledger.md)
