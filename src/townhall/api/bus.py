"""Fan-out of space events to event-stream subscribers: a bounded queue per subscriber."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

logger = logging.getLogger(__name__)

RemoteHandler = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Called with (space id, event) for events another node published."""


class EventBus:
    """In-process publish/subscribe keyed by space; slow subscribers lose old events,
    never block publishers (like aiortc's MediaRelay: one queue per consumer)."""

    def __init__(self, queue_size: int = 256) -> None:
        self._subs: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._queue_size = queue_size

    def publish(self, space_id: str, event: dict[str, Any]) -> None:
        for queue in list(self._subs.get(space_id, ())):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self, space_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subs[space_id].add(queue)
        try:
            yield queue
        finally:
            self._subs[space_id].discard(queue)
            if not self._subs[space_id]:
                del self._subs[space_id]

    def subscriber_count(self, space_id: str | None = None) -> int:
        if space_id is not None:
            return len(self._subs.get(space_id, ()))
        return sum(len(s) for s in self._subs.values())

    async def watch(self, space_id: str, handler: RemoteHandler) -> None:
        """Have ``handler`` called for events of ``space_id`` published by other nodes.
        In process there are no other nodes; :class:`~townhall.cluster.bus.RedisEventBus`
        overrides this."""
        return None

    async def unwatch(self, space_id: str) -> None:
        """Stop calling the handler set by :meth:`watch`."""
        return None

    async def start(self) -> None:
        """Start background work (none in process)."""
        return None

    async def close(self) -> None:
        """Stop background work (none in process)."""
        return None
