from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs import schema  # noqa: F401  registers the OpenAPI auth extension

        ledger_providers_register()
        blobs_providers_register()


def ledger_providers_register() -> None:
    """Give the ledger's reconciliation the facts of jobs, its wallet history their names and
    organisations' reports their pool jobs' usage (the ledger must not import jobs)."""
    from jobs.pool_usage import pool_usage
    from jobs.selectors import job_facts, job_names
    from ledger.providers import providers

    providers.job_facts = job_facts
    providers.job_names = job_names
    providers.pool_usage = pool_usage


def blobs_providers_register() -> None:
    """Tell the blob store's collector which blobs unfinished jobs read (blobs must not
    import jobs)."""
    from blobs.providers import providers
    from jobs.selectors import blobs_in_use

    providers.blobs_in_use = blobs_in_use
