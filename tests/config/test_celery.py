"""Beat queues a first reconciliation soon after it starts, not one period later."""

from __future__ import annotations

from celery.signals import beat_init

from config.celery import app


def test_beat_start_queues_a_reconciliation_a_minute_later(monkeypatch, settings):
    # given
    sent: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(app, "send_task", lambda name, **options: sent.append((name, options)))

    # when
    beat_init.send(sender=None)

    # then
    assert settings.RECONCILE_FIRST_RUN_SECONDS == 60
    assert sent == [("ledger.tasks.ledger_reconcile_task", {"countdown": 60})]


def test_the_reconciliation_task_is_the_one_beat_schedules(settings):
    from ledger.tasks import ledger_reconcile_task

    assert settings.CELERY_BEAT_SCHEDULE["ledger-reconcile"]["task"] == ledger_reconcile_task.name
