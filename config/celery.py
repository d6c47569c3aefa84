"""The Celery app. Tasks take primary keys, call one service, and are safe to retry."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("communipute")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
