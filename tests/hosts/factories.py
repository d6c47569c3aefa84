"""Test data for hosts: specs as an agent reports them, hosts, credentials."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from accounts.models import User
from accounts.tokens import secret_issue
from hosts.models import Host, HostCredential, HostStatus


def specs(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cpu_model": "AMD Ryzen 9 5950X",
        "arch": "x86_64",
        "cpus": 16,
        "memory_mb": 65536,
        "disk_free_mb": 500_000,
        "os": "linux",
        "os_version": "Debian GNU/Linux 12",
        "gpus": [],
        "docker_available": True,
    }
    base.update(overrides)
    return base


def host_create(owner: User, **fields: Any) -> Host:
    values: dict[str, Any] = {
        "name": "box",
        "cpu_model": "AMD Ryzen 9 5950X",
        "arch": "x86_64",
        "cpus": 16,
        "memory_mb": 65536,
        "os": "linux",
        "cpu_core_hour_micros": 20_000,
        "memory_gb_hour_micros": 2_000,
        "disk_free_mb": 500_000,
    }
    values.update(fields)
    return Host.objects.create(owner=owner, **values)


def credential_create(host: Host) -> str:
    issued = secret_issue("cph")
    HostCredential.objects.create(host=host, prefix=issued.prefix, digest=issued.digest)
    return issued.plaintext


def online(now: datetime | None = None) -> dict[str, Any]:
    return {"status": HostStatus.ONLINE, "last_seen_at": now or timezone.now()}
