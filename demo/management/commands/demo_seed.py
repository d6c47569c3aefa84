"""``manage.py demo_seed``: the demo users and their credits (demo/services.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from config.transactions import durable_call
from demo.services import demo_seed


class Command(BaseCommand):
    help = "Create the demo users (random passwords kept under var/) and grant the renter credits."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--var-dir", type=Path, default=None, help="default: COMMUNIPUTE_VAR_DIR (var/)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        var_dir: Path = options["var_dir"] or settings.VAR_DIR
        seed = durable_call(demo_seed, var_dir=var_dir)
        granted = seed.credits_granted_micros // 1_000_000
        self.stdout.write(
            f"demo users (passwords kept in {seed.users_file}):"
            + "".join(
                f"\n  {login.role:<7} {login.username:<12} {login.password}"
                for login in seed.logins
            )
            + (f"\ngranted the renter {granted} credits" if granted else "")
        )
