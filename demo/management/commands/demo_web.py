"""``manage.py demo_web``: the embedded demo's web process — daphne, plus a Celery worker in
the same process.

The embedded default has no Redis, so its channel layer lives in one process's memory
(``config.channel_layers.InProcessChannelLayer``): only code in daphne's process can reach an
agent's socket. Celery tasks ring agents' doorbells too (the reaper re-offers queued jobs, for
one), so the demo runs its worker as a thread pool inside this process, consuming the same
SQLite broker that request handlers and the (separate) beat process publish to. In production
(Redis) workers are separate processes and this command is not used; docs/operations.md.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from daphne.cli import CommandLineInterface
from django.core.management.base import BaseCommand, CommandParser

from config.celery import app

logger = logging.getLogger(__name__)
WORKER_STOP_SECONDS = 15


class Command(BaseCommand):
    help = "Run daphne with a Celery worker in the same process (the embedded demo)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--worker-threads", type=int, default=2)

    def handle(self, *args: Any, **options: Any) -> None:
        from celery.worker import WorkController

        worker = WorkController(
            app=app,
            hostname="demo-web@%h",
            pool="threads",
            concurrency=options["worker_threads"],
            loglevel="INFO",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
        thread.start()
        try:
            # Runs the Twisted reactor in this (the main) thread until SIGINT or SIGTERM.
            CommandLineInterface().run(
                [
                    "--bind",
                    options["bind"],
                    "--port",
                    str(options["port"]),
                    "--verbosity",
                    "1",
                    "config.asgi:application",
                ]
            )
        finally:
            logger.info("stopping the in-process Celery worker")
            worker.stop(in_sighandler=False)
            thread.join(WORKER_STOP_SECONDS)
