"""Helpers shared by the benchmarks: Django set-up and a scratch database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def django_setup() -> None:
    """Configure Django from the environment, as the tests do, with query logging off."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    import django
    from django.conf import settings

    django.setup()
    # DEBUG would record every query in memory and slow every path down.
    settings.DEBUG = False


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A freshly migrated database beside the configured one, dropped afterwards.

    Benchmarks write thousands of rows; they never touch the real database (nor the test
    database pytest uses at the same time).
    """
    from django.db import connection

    original = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"{prefix}_{original}"
    name: str = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield name
    finally:
        connection.creation.destroy_test_db(original, verbosity=0)
