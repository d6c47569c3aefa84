"""The Celery app. Tasks take primary keys, call one service, and are safe to retry."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("communipute")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@beat_init.connect
def first_reconciliation_soon(sender: Any = None, **kwargs: Any) -> None:
    """Beat's first reconciliation would come one period (15 min) after it starts: queue one
    ``RECONCILE_FIRST_RUN_SECONDS`` (60 s) after, then the schedule takes over (docs/ledger.md).

    Sent by name: the config layer imports no app (tests/test_architecture.py).
    """
    from django.conf import settings

    app.send_task(
        "ledger.tasks.ledger_reconcile_task", countdown=settings.RECONCILE_FIRST_RUN_SECONDS
    )
