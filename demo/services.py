"""The demo's seed: three users with per-machine random passwords, and credits to spend.

Nothing here is hard-coded but the usernames: the passwords are generated on first run and kept
in ``<var>/demo-users.json`` (mode 0600), so every later run (and ``make demo`` printing the
logins) finds the same ones. Running the seed again changes nothing that is already right.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from accounts.models import User
from accounts.services import user_signup
from ledger.services import wallet_credit

USERS_FILE = "demo-users.json"
# role -> username. The renter runs jobs, the host owner's machine runs the local agent, the
# staff user sees the billing reports and the Django admin.
DEMO_USERNAMES = {"renter": "demo-renter", "host": "demo-host", "staff": "demo-admin"}
RENTER_CREDITS_MICROS = 100_000_000  # 100 credits
RENTER_CREDITS_KEY = "demo-seed:renter-credits"


@dataclass(frozen=True)
class DemoLogin:
    role: str
    username: str
    password: str


@dataclass(frozen=True)
class DemoSeed:
    logins: list[DemoLogin]
    users_file: Path
    credits_granted_micros: int  # 0 when an earlier run granted them


def demo_passwords(var_dir: Path) -> dict[str, str]:
    """role -> password, read from ``<var>/demo-users.json`` or generated and written there."""
    path = var_dir / USERS_FILE
    if path.exists():
        stored = json.loads(path.read_text())
        if all(isinstance(stored.get(role, {}).get("password"), str) for role in DEMO_USERNAMES):
            return {role: stored[role]["password"] for role in DEMO_USERNAMES}
    passwords = {role: secrets.token_urlsafe(12) for role in DEMO_USERNAMES}
    body = {
        role: {"username": DEMO_USERNAMES[role], "password": passwords[role]}
        for role in DEMO_USERNAMES
    }
    var_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(body, handle, indent=2)
    temporary.replace(path)
    return passwords


def _demo_user(username: str, password: str, *, is_staff: bool) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        user = user_signup(username=username, email=f"{username}@example.com", password=password)
    changed = []
    if not user.check_password(password):
        user.set_password(password)
        changed.append("password")
    if is_staff and not (user.is_staff and user.is_superuser):
        user.is_staff = user.is_superuser = True
        changed += ["is_staff", "is_superuser"]
    if changed:
        user.save(update_fields=changed)
    return user


def demo_seed(*, var_dir: Path) -> DemoSeed:
    """Create (or bring back) the demo users and grant the renter 100 credits, once.

    The grant goes through the ledger (``wallet_credit`` with ``source="grant"``, by the staff
    user) under a fixed key, so a second run posts nothing. The users and the grant are one
    unit of work in the caller's transaction (the command's, ``durable``); the passwords file
    is written first, so a failed seed leaves only passwords the next run reuses.
    """
    passwords = demo_passwords(var_dir)
    with transaction.atomic(savepoint=False):  # the caller's transaction, else its own
        users = {
            role: _demo_user(username, passwords[role], is_staff=role == "staff")
            for role, username in DEMO_USERNAMES.items()
        }
        grant = wallet_credit(
            user=users["renter"],
            amount_micros=RENTER_CREDITS_MICROS,
            key=RENTER_CREDITS_KEY,
            reason="demo credits",
            source="grant",
            staff_user=users["staff"],
        )
    logins = [
        DemoLogin(role=role, username=username, password=passwords[role])
        for role, username in DEMO_USERNAMES.items()
    ]
    return DemoSeed(
        logins=logins,
        users_file=var_dir / USERS_FILE,
        credits_granted_micros=0 if grant.is_replay else RENTER_CREDITS_MICROS,
    )
