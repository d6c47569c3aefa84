from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs import schema  # noqa: F401  registers the OpenAPI auth extension

        ledger_providers_register()

        _agent_handlers_register()


def ledger_providers_register() -> None:
    """Give the ledger's reconciliation the facts of jobs (the ledger must not import jobs)."""
    from jobs.selectors import job_facts
    from ledger.providers import providers

    providers.job_facts = job_facts


def _agent_handlers_register() -> None:
    """Plug the job message handlers into the agent socket (hosts must not import jobs)."""
    from agent.protocol import RunningJobRef
    from hosts import agent_handlers
    from jobs.agent_messages import FAST_HANDLERS, HANDLERS, resume_decide

    for message_type, handler in HANDLERS.items():
        agent_handlers.register(message_type, handler)
    for message_type, fast in FAST_HANDLERS.items():
        agent_handlers.register_fast(message_type, fast)

    def resume(host_id: int, running_jobs: list[RunningJobRef]) -> agent_handlers.ResumeDecision:
        keep, kill, replies = resume_decide(host_id, running_jobs)
        return agent_handlers.ResumeDecision(keep_jobs=keep, kill_jobs=kill, replies=replies)

    agent_handlers.register_resume(resume)
