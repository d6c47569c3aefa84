import importlib
from typing import Any

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs import schema  # noqa: F401  registers the OpenAPI auth extension

        _agent_handlers_register()


def _agent_handlers_register() -> None:
    """Plug the job message handlers into the agent socket (hosts must not import jobs)."""
    # INTEGRATION POINT: import hosts.agent_handlers directly once the hosts branch is on main.
    try:
        registry: Any = importlib.import_module("hosts.agent_handlers")
    except ModuleNotFoundError:
        return
    from jobs.agent_messages import HANDLERS, resume_decide

    for message_type, handler in HANDLERS.items():
        registry.register(message_type, handler)
    registry.register_resume(
        lambda host_id, running_jobs: registry.ResumeDecision(*resume_decide(host_id, running_jobs))
    )
