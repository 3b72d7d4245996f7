"""Listener counts behind one interface: in memory (embedded node) or Redis HyperLogLogs
(several nodes and edges PFADD the listeners they serve into the same keys).

``current`` is PFCOUNT over the 10-second buckets covering the last 30 s (one merged call),
``total`` is PFCOUNT of the all-time key and ``peak`` the highest ``current`` read so far,
kept by a small Lua max. Touches are collected in memory and flushed once a second, so a
media request never waits for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Protocol

from redis.asyncio import Redis

from ..store.redis_client import UNAVAILABLE
from ..tasks import stop_task
from .counts import WINDOW_SECONDS, ListenerCounter, ListenerCounts
from .edge_counts import BUCKET_TTL_SECONDS, all_key, bucket_keys

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
BUCKET_TTL = BUCKET_TTL_SECONDS
"""Buckets are read for 30 s after they close; the edges' shippers use the same expiry."""
ALL_TTL = 30 * 24 * 3600
"""All-time and peak keys outlive the space by a month."""


class ListenerTally(Protocol):
    """Where media routes report listeners and the state document reads the figures."""

    def touch(self, space_id: str, listener_id: str, now: float) -> None:
        """``listener_id`` fetched media of ``space_id`` at ``now`` (never blocks)."""
        ...

    async def counts(self, space_id: str, now: float) -> ListenerCounts: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalTally:
    """The embedded node's in-memory :class:`ListenerCounter`."""

    def __init__(self, counter: ListenerCounter | None = None) -> None:
        self.counter = counter or ListenerCounter()

    def touch(self, space_id: str, listener_id: str, now: float) -> None:
        self.counter.touch(space_id, listener_id, now)

    async def counts(self, space_id: str, now: float) -> ListenerCounts:
        return self.counter.counts(space_id, now)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def peak_key(space: str) -> str:
    return f"th:seen:{space}:peak"


# KEYS: peak, all, bucket...  ARGV: ttl of the peak key
_COUNTS = """
local current = 0
if #KEYS > 2 then current = redis.call('PFCOUNT', unpack(KEYS, 3, #KEYS)) end
local total = redis.call('PFCOUNT', KEYS[2])
local peak = tonumber(redis.call('GET', KEYS[1]) or '0')
if current > peak then
  peak = current
  redis.call('SET', KEYS[1], peak, 'EX', ARGV[1])
end
if peak > total then total = peak end
return {current, peak, total}
"""


class RedisTally:
    """Listener counts in Redis HyperLogLogs (see the module docstring)."""

    def __init__(self, redis: Redis, *, window: float = WINDOW_SECONDS) -> None:
        self._redis = redis
        self._window = window
        self._pending: dict[str, set[str]] = defaultdict(set)
        self._counts = redis.register_script(_COUNTS)
        self._task: asyncio.Task[None] | None = None

    def touch(self, space_id: str, listener_id: str, now: float) -> None:
        self._pending[bucket_keys(space_id, now, self._window)[-1]].add(listener_id)
        self._pending[all_key(space_id)].add(listener_id)

    async def counts(self, space_id: str, now: float) -> ListenerCounts:
        if self._pending:
            await self.flush()
        keys = bucket_keys(space_id, now, self._window)
        current, peak, total = await self._counts(
            keys=[peak_key(space_id), all_key(space_id), *keys], args=[ALL_TTL]
        )
        return ListenerCounts(current=int(current), peak=int(peak), total=int(total))

    async def flush(self) -> None:
        """Send the listeners collected since the last flush (one pipeline)."""
        pending, self._pending = self._pending, defaultdict(set)
        if not pending:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, ids in pending.items():
                pipe.pfadd(key, *ids)
                pipe.expire(key, ALL_TTL if key.endswith(":all") else BUCKET_TTL)
            await pipe.execute()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="listener-flush")

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except UNAVAILABLE as exc:  # Redis away: these touches are lost, counts honest-low
                logger.warning("could not flush listener counts: %s", exc)
            except Exception:
                logger.exception("could not flush listener counts")
