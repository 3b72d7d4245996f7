"""API keys for accounts: shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "th_"


def new_api_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """API keys carry 256 random bits, so a plain SHA-256 is a sound hash for lookup."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(value: str) -> bool:
    return value.startswith(PREFIX) and 20 <= len(value) <= 200


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)
