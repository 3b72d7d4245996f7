"""Revoked listener tickets: every ticket of a listener (``sub``) or one ticket (``jti``).

:class:`Revocations` is the pure core (``now`` passed in). :class:`RevocationList` is the
node's adapter: on an embedded node in memory and in a file of its data folder; with Redis,
shared by every node like the block list (:class:`~.shared.SharedHash`), so a revocation
made through any node reaches the media routes of all of them and the edges that poll any
of them within about a second.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from redis.asyncio import Redis

from .shared import SharedHash, decode_records

logger = logging.getLogger(__name__)

KEY = "th:revocations"
MAX_REVOCATIONS = 5_000
DEFAULT_TTL = 6 * 3600.0
"""A revocation outlives any listener ticket it could name (the default ticket lifetime)."""


@dataclass(frozen=True)
class Revocation:
    """One revoked subject or ticket id."""

    subject: str | None
    """Listener id (every ticket of that listener), or None."""
    jti: str | None
    """One ticket's id, or None."""
    created_at: float
    """Unix time it was added."""
    expires_at: float
    """Unix time it lapses."""
    reason: str | None = None
    """Free text."""

    @property
    def key(self) -> str:
        return f"s:{self.subject}" if self.subject is not None else f"j:{self.jti}"


class Revocations:
    """The revoked subjects and ticket ids (pure: ``now`` passed in)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Revocation] = {}

    def add(self, rev: Revocation, now: float) -> None:
        """Add (or renew) one; ValueError when :data:`MAX_REVOCATIONS` are in force."""
        self.prune(now)
        if rev.key not in self._by_key and len(self._by_key) >= MAX_REVOCATIONS:
            raise ValueError(f"at most {MAX_REVOCATIONS} revocations are kept")
        self._by_key[rev.key] = rev

    def replace(self, revs: list[Revocation]) -> None:
        self._by_key = {r.key: r for r in revs}

    def revoked(self, subject: str, jti: str, now: float) -> bool:
        if not self._by_key:
            return False
        for key in (f"s:{subject}", f"j:{jti}"):
            rev = self._by_key.get(key)
            if rev is not None and rev.expires_at > now:
                return True
        return False

    def prune(self, now: float) -> list[Revocation]:
        """Drop the lapsed ones; returns them."""
        gone = [r for r in self._by_key.values() if r.expires_at <= now]
        for r in gone:
            del self._by_key[r.key]
        return gone

    def active(self, now: float) -> list[Revocation]:
        self.prune(now)
        return sorted(self._by_key.values(), key=lambda r: r.created_at)


class RevocationList:
    """The node's revocations, shared through Redis when there is one."""

    def __init__(self, redis: Redis | None = None, path: Path | None = None) -> None:
        self.list = Revocations()
        self._shared = SharedHash(redis, KEY, self._reload, path=path)

    def _reload(self, values: list[str]) -> None:
        self.list.replace(decode_records(values, Revocation, "revocation"))

    async def add(self, rev: Revocation, now: float) -> None:
        self.list.add(rev, now)
        await self._shared.put(rev.key, json.dumps(asdict(rev)))

    async def prune(self, now: float) -> None:
        """Drop lapsed revocations here and in Redis."""
        for rev in self.list.prune(now):
            await self._shared.delete(rev.key)

    def revoked(self, subject: str, jti: str, now: float) -> bool:
        return self.list.revoked(subject, jti, now)

    def active(self, now: float) -> list[Revocation]:
        return self.list.active(now)

    async def start(self) -> None:
        await self._shared.start()

    async def close(self) -> None:
        await self._shared.close()
