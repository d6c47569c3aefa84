"""Bearer secrets shared by personal API tokens and host agent credentials.

One scheme for both: a random secret shown once, looked up by a short public prefix and
stored only as a SHA-256 digest. The secrets carry 256 bits of entropy, so a fast hash is
enough (slow password hashes guard low-entropy human passwords, not random keys).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX_LENGTH = 12


@dataclass(frozen=True)
class IssuedSecret:
    """A freshly minted secret: ``plaintext`` goes to the user once, the rest is stored."""

    plaintext: str
    prefix: str
    digest: str


def secret_digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def secret_issue(kind: str) -> IssuedSecret:
    """Mint a secret such as ``cpt_3fa9…`` (kind ``cpt`` for API tokens, ``cph`` for hosts)."""
    plaintext = f"{kind}_{secrets.token_urlsafe(32)}"
    return IssuedSecret(plaintext, plaintext[:PREFIX_LENGTH], secret_digest(plaintext))


def secret_matches(plaintext: str, digest: str) -> bool:
    return hmac.compare_digest(secret_digest(plaintext), digest)
