"""Signing keys with ids, kept in a small JSON file so they survive restarts and rotate."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SigningKey:
    """One HMAC key."""

    kid: str
    """Key id, written into every token's header."""
    secret: bytes
    """Key material (32 random bytes)."""
    created_at: float
    """Unix time the key was made."""


class Keyring:
    """Ordered set of keys; the newest signs, all verify until retired."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._keys = {k.kid: k for k in keys}
        self._active = max(keys, key=lambda k: k.created_at)

    @property
    def active(self) -> SigningKey:
        return self._active

    def get(self, kid: str) -> SigningKey | None:
        return self._keys.get(kid)

    def keys(self) -> list[SigningKey]:
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    @staticmethod
    def new_key(now: float | None = None) -> SigningKey:
        return SigningKey(
            kid=secrets.token_hex(4),
            secret=_edge_safe_secret(),
            created_at=time.time() if now is None else now,
        )

    @classmethod
    def generate(cls) -> Keyring:
        return cls([cls.new_key()])

    def rotated(self, keep: int = 2) -> Keyring:
        """A keyring with a fresh active key, keeping the ``keep`` newest older ones."""
        newest = self.new_key(max(time.time(), self._active.created_at + 1e-3))
        return Keyring([*self.keys()[-keep:], newest])

    # --- persistence -------------------------------------------------------------

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        if path.exists():
            return cls.load(path)
        ring = cls.generate()
        ring.save(path)
        return ring

    @classmethod
    def load(cls, path: Path) -> Keyring:
        data = json.loads(path.read_text())
        return cls(
            [
                SigningKey(
                    kid=k["kid"], secret=bytes.fromhex(k["secret"]), created_at=k["created_at"]
                )
                for k in data["keys"]
            ]
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        payload = {
            "keys": [
                {"kid": k.kid, "secret": k.secret.hex(), "created_at": k.created_at}
                for k in self.keys()
            ]
        }
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
        os.replace(tmp, path)


def _edge_safe_secret(size: int = 32) -> bytes:
    """Random key material without zero bytes: Varnish's digest vmod takes the HMAC key as a C
    string, so an inner zero byte would make the key unusable at the edge. Rejection sampling
    costs a fraction of a bit of entropy per byte (still > 255 bits)."""
    while True:
        secret = secrets.token_bytes(size)
        if b"\0" not in secret:
            return secret
