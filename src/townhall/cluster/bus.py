"""Space events across nodes: Redis streams behind the in-process EventBus interface.

A node delivers its own events to its local subscribers at once and appends them to the
space's stream ``th:evs:{space}`` (``XADD``, capped at :data:`STREAM_MAXLEN` entries and
expiring a day after the last one; in order; while Redis is away an event waits up to
:data:`PUBLISH_PATIENCE_S`). A node reads the streams of the spaces it has local subscribers or
watchers for with one blocking ``XREAD`` from the last entry it delivered, and skips entries it
wrote itself. Watchers (the media hub of the space's origin) get the events other nodes wrote.

Streams rather than pub/sub: a reader that was cut off (a Redis restart, a slow loop) resumes
from its cursor, so an event written while it was reconnecting is delivered late instead of
lost. A new interest starts at the stream's current end, and wakes the blocked read at once
through the node's own stream ``th:evn:{node}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.typing import KeyT, StreamIdT

from ..api.bus import EventBus, RemoteHandler

logger = logging.getLogger(__name__)

OUTBOX_SIZE = 10_000
PUBLISH_PATIENCE_S = 10.0
"""How long an event waits for Redis to come back before it is dropped (logged)."""
STREAM_MAXLEN = 1_000
"""Entries a space's stream keeps (approximately): a reader more than this far behind loses
the oldest."""
STREAM_TTL_S = 24 * 3600
"""A space's stream expires this long after its last event."""
BLOCK_MS = 1_000
"""How long one ``XREAD`` waits for an entry."""
READ_COUNT = 256
"""Entries one ``XREAD`` returns at most per stream."""


STREAM_PREFIX = "th:evs:"


def stream(space_id: str) -> str:
    """The stream of a space's events."""
    return f"{STREAM_PREFIX}{space_id}"


def wake_stream(node_id: str) -> str:
    """A node's own stream: an entry there ends its blocked read (its interests changed)."""
    return f"th:evn:{node_id}"


class RedisEventBus(EventBus):
    """:class:`EventBus` whose events reach every node's subscribers through Redis."""

    def __init__(self, redis: Redis, node_id: str, queue_size: int = 256) -> None:
        super().__init__(queue_size)
        self._redis = redis
        self._node_id = node_id
        self._interest: Counter[str] = Counter()
        self._cursors: dict[str, str] = {}
        """Last entry id delivered (or the end at the time of interest), per space read."""
        self._wake_cursor = "$"
        self._watchers: dict[str, RemoteHandler] = {}
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(OUTBOX_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    # -- EventBus interface ------------------------------------------------------------

    def publish(self, space_id: str, event: dict[str, Any]) -> None:
        super().publish(space_id, event)
        message = json.dumps({"node": self._node_id, "event": event}, default=str)
        try:
            self._outbox.put_nowait((space_id, message))
        except asyncio.QueueFull:
            logger.warning("event outbox full; dropped a %s event", event.get("kind"))

    @asynccontextmanager
    async def subscribe(self, space_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        await self._want(space_id)
        try:
            async with super().subscribe(space_id) as queue:
                yield queue
        finally:
            await self._unwant(space_id)

    async def watch(self, space_id: str, handler: RemoteHandler) -> None:
        if space_id not in self._watchers:
            self._watchers[space_id] = handler
            await self._want(space_id)

    async def unwatch(self, space_id: str) -> None:
        if self._watchers.pop(space_id, None) is not None:
            await self._unwant(space_id)

    def reading(self) -> frozenset[str]:
        """The spaces whose streams this node reads now."""
        return frozenset(self._cursors)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        self._wake_cursor = await self._end_of(wake_stream(self._node_id))
        self._tasks = [
            asyncio.create_task(self._read(), name="event-bus-reader"),
            asyncio.create_task(self._send(), name="event-bus-sender"),
        ]

    async def close(self) -> None:
        await self._drain(timeout=1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- internals ---------------------------------------------------------------------

    async def _end_of(self, key: str) -> str:
        """The id of the newest entry of ``key`` ("0-0" when empty): reading from it gives
        every entry written after this call. With Redis away, the wall clock in Redis' id
        format (same machine or synchronised clocks assumed)."""
        try:
            newest = await self._redis.xrevrange(key, count=1)
        except Exception as exc:
            logger.warning("could not read the end of %s (%s); starting from now", key, exc)
            return f"{int(time.time() * 1000)}-0"
        return str(newest[0][0]) if newest else "0-0"

    async def _want(self, space_id: str) -> None:
        async with self._lock:
            self._interest[space_id] += 1
            if self._interest[space_id] == 1:
                self._cursors[space_id] = await self._end_of(stream(space_id))
                await self._wake()

    async def _unwant(self, space_id: str) -> None:
        async with self._lock:
            self._interest[space_id] -= 1
            if self._interest[space_id] <= 0:
                del self._interest[space_id]
                self._cursors.pop(space_id, None)

    async def _wake(self) -> None:
        """End the reader's blocked XREAD so that it reads the new set of streams."""
        if not self._tasks:
            return
        with contextlib.suppress(Exception):  # Redis away: the reader retries anyway
            await self._redis.xadd(wake_stream(self._node_id), {"w": "1"}, maxlen=10)

    async def _drain(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._outbox.empty() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            space_id, message = await self._outbox.get()
            queued = loop.time()
            while True:  # Redis away (a restart): keep the event, in order, for a while
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.xadd(
                            stream(space_id), {"m": message}, maxlen=STREAM_MAXLEN, approximate=True
                        )
                        pipe.expire(stream(space_id), STREAM_TTL_S)
                        await pipe.execute()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if loop.time() - queued > PUBLISH_PATIENCE_S:
                        logger.error("dropped an event of space %s: %s", space_id, exc)
                        break
                    await asyncio.sleep(0.2)

    async def _read(self) -> None:
        failing = False
        wake = wake_stream(self._node_id)
        while True:
            keys: dict[KeyT, StreamIdT] = {stream(s): c for s, c in self._cursors.items()}
            keys[wake] = self._wake_cursor
            try:
                reply = await self._redis.xread(keys, count=READ_COUNT, block=BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: keep the cursors, read on when it is back
                if not failing:
                    logger.warning("event bus lost Redis (%s); retrying", exc)
                failing = True
                await asyncio.sleep(0.5)
                continue
            if failing:
                logger.info("event bus reads Redis again (%d spaces)", len(self._cursors))
                failing = False
            for key, entries in _streams(reply):
                for entry_id, fields in entries:
                    if key == wake:
                        self._wake_cursor = str(entry_id)
                        continue
                    space_id = key.removeprefix(STREAM_PREFIX)
                    if space_id not in self._cursors:
                        break  # nobody here reads this space any more
                    self._cursors[space_id] = str(entry_id)
                    await self._deliver(space_id, fields.get("m"))

    async def _deliver(self, space_id: str, data: Any) -> None:
        try:
            envelope = json.loads(data)
        except (TypeError, ValueError):
            logger.warning("ignored a malformed event of space %s", space_id)
            return
        if not isinstance(envelope, dict) or envelope.get("node") == self._node_id:
            return
        event = envelope.get("event")
        if not isinstance(event, dict):
            return
        EventBus.publish(self, space_id, event)
        handler = self._watchers.get(space_id)
        if handler is not None:
            try:
                await handler(space_id, event)
            except Exception:
                logger.exception("remote event handler failed for space %s", space_id)


def _streams(reply: Any) -> list[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """``XREAD``'s answer (RESP2: a list of [stream, entries]) as (stream, entries) pairs."""
    return [
        (str(key), [(str(i), dict(f or {})) for i, f in entries]) for key, entries in reply or ()
    ]
