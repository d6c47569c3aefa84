"""Test settings: the real settings with a few overrides for speed and determinism."""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")

from config.settings import *  # noqa: F403
from config.settings import DATABASES, REST_FRAMEWORK

# Fast hashing: tests create many users, and the hash strength is not under test.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
DEMO_PAYMENTS_ENABLED = True
# Throttling has its own tests that lower these rates explicitly.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "user": "10000/min", "auth": "10000/min"},
}
# The account log-in throttle is tested in tests/accounts/test_login_throttle.py, which lowers it.
LOGIN_FAILURE_LIMIT = 100_000
# Close connections after each request or message, as before persistent connections: worker
# threads of the tests' event loops would otherwise keep the test database open at teardown.
DATABASES["default"]["CONN_MAX_AGE"] = 0
