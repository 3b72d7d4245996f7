"""Fan-out of space events to event-stream subscribers: a bounded queue per subscriber."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

logger = logging.getLogger(__name__)


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
