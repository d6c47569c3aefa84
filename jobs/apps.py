from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # INTEGRATION POINT: register jobs.agent_messages.HANDLERS with the hosts agent
        # consumer's registry (hosts must not import jobs) once the hosts branch is on main.
        pass
