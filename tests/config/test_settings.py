"""config/settings.py as a deployment meets it: each case starts a fresh interpreter with only
the environment it names (settings are read once, at import)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
A_REAL_KEY = "k3Y-" + "x7Qp" * 12
STRIPE = {
    "PAYMENT_PROVIDER": "stripe",
    "STRIPE_SECRET_KEY": "sk_test_placeholder",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_placeholder",
    "STRIPE_WEBHOOK_SECRET": "whsec_placeholder",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("key", [None, "", "change-me"])
def test_debug_off_refuses_to_start_without_a_real_secret_key(key):
    # given
    env = {"DEBUG": "0"} if key is None else {"DEBUG": "0", "SECRET_KEY": key}

    # when
    result = manage("check", **env)

    # then
    assert result.returncode == 1
    assert "ImproperlyConfigured: SECRET_KEY" in result.stderr


def test_debug_off_refuses_a_wildcard_host_which_would_open_the_socket_origin_check():
    # when
    result = manage("check", DEBUG="0", SECRET_KEY=A_REAL_KEY, ALLOWED_HOSTS="*", **STRIPE)

    # then
    assert result.returncode == 1
    assert "ImproperlyConfigured: ALLOWED_HOSTS must name the hosts" in result.stderr


def test_a_production_environment_passes_the_deployment_checks():
    # when
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=A_REAL_KEY,
        ALLOWED_HOSTS="communipute.example",
        CSRF_TRUSTED_ORIGINS="https://communipute.example",
        PUBLIC_URL="https://communipute.example",
        SECURE_SSL_REDIRECT="1",
        TRUST_X_FORWARDED_PROTO="1",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
        **STRIPE,
    )

    # then
    assert (result.returncode, result.stderr) == (0, "")
    assert "System check identified no issues" in result.stdout


def test_by_default_only_the_domain_owners_https_choices_are_left_open():
    # when: DEBUG off, nothing about HTTPS said
    result = manage("check", "--deploy", SECRET_KEY=A_REAL_KEY, **STRIPE)

    # then: cookies are secure and HSTS is on; sub-domains, preloading and the redirect (which
    # needs to know about the proxy) are left to the deployment
    issues = sorted(set(re.findall(r"\((\w+\.[EW]\d+)\)", result.stdout + result.stderr)))
    assert issues == ["security.W005", "security.W008", "security.W021"]
