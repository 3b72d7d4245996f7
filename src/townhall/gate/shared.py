"""A Redis hash mirrored in every node's memory: the block list and the revoked tickets.

Writes go to the hash and bump a version counter; every node polls the counter once a second
and reloads the hash when it moved, so readers (the join path, the media routes) only ever
read memory. Without Redis (an embedded node) the adapter keeps nothing and readers use
what the owner holds in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis

from ..tasks import stop_task

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0


class SharedHash:
    """One Redis hash (``key``) and its version counter (``key:v``); ``on_reload`` receives
    every value (JSON text) whenever another node changed the hash."""

    def __init__(
        self,
        redis: Redis | None,
        key: str,
        on_reload: Callable[[list[str]], None],
        *,
        interval: float = REFRESH_SECONDS,
    ) -> None:
        self._redis = redis
        self.key = key
        self.version_key = f"{key}:v"
        self._on_reload = on_reload
        self._interval = interval
        self._version: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        return self._redis is not None

    async def put(self, field: str, value: str) -> None:
        if self._redis is not None:
            await self._redis.hset(self.key, field, value)
            await self._redis.incr(self.version_key)

    async def delete(self, field: str) -> bool:
        """Whether the field was in the hash (False without Redis)."""
        if self._redis is None:
            return False
        found = bool(await self._redis.hdel(self.key, field))
        await self._redis.incr(self.version_key)
        return found

    async def refresh(self) -> None:
        """Reload if the version counter moved (or on the first call)."""
        if self._redis is None:
            return
        version = await self._redis.get(self.version_key)
        text = None if version is None else str(version)
        if text == self._version and text is not None:
            return
        raw = await self._redis.hgetall(self.key)
        self._on_reload([str(v) for v in raw.values()])
        self._version = text

    async def start(self) -> None:
        if self._redis is not None and self._task is None:
            await self.refresh()
            self._task = asyncio.create_task(self._poll())

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:  # Redis away: keep the last list, try again
                logger.warning("could not refresh %s", self.key, exc_info=True)
