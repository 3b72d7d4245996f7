"""Space events across nodes: Redis pub/sub behind the in-process EventBus interface.

A node delivers its own events to its local subscribers at once and publishes them on
``th:ev:{space}`` (in order; while Redis is away an event waits up to
:data:`PUBLISH_PATIENCE_S`); it subscribes to that channel only while it has local subscribers or
watchers for the space, and skips messages it sent itself. Watchers (the media hub of the
space's origin) get the events other nodes published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from ..api.bus import EventBus, RemoteHandler

logger = logging.getLogger(__name__)

OUTBOX_SIZE = 10_000
PUBLISH_PATIENCE_S = 10.0
"""How long an event waits for Redis to come back before it is dropped (logged)."""


def channel(space_id: str) -> str:
    return f"th:ev:{space_id}"


class RedisEventBus(EventBus):
    """:class:`EventBus` whose events reach every node's subscribers through Redis."""

    def __init__(self, redis: Redis, node_id: str, queue_size: int = 256) -> None:
        super().__init__(queue_size)
        self._redis = redis
        self._node_id = node_id
        self._pubsub: PubSub | None = None
        self._interest: Counter[str] = Counter()
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

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._pubsub is not None:
            return
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        # one always-on channel, so the connection exists before the reader reads
        await self._pubsub.subscribe(f"th:node:{self._node_id}")
        self._tasks = [
            asyncio.create_task(self._read(self._pubsub), name="event-bus-reader"),
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
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None

    # -- internals ---------------------------------------------------------------------

    async def _want(self, space_id: str) -> None:
        async with self._lock:
            self._interest[space_id] += 1
            if self._interest[space_id] == 1 and self._pubsub is not None:
                try:
                    await self._pubsub.subscribe(channel(space_id))
                except Exception:  # Redis away: the reader resubscribes every interest
                    logger.warning("could not subscribe to space %s now; will retry", space_id)

    async def _unwant(self, space_id: str) -> None:
        async with self._lock:
            self._interest[space_id] -= 1
            if self._interest[space_id] <= 0:
                del self._interest[space_id]
                if self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel(space_id))

    async def _resubscribe(self) -> PubSub:
        """A fresh pub/sub connection subscribed to the node channel and every space this
        node still cares about (redis-py forgets channels whose subscribe failed)."""
        async with self._lock:
            old = self._pubsub
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.aclose()  # type: ignore[no-untyped-call]
            fresh = self._redis.pubsub(ignore_subscribe_messages=True)
            await fresh.subscribe(f"th:node:{self._node_id}", *(channel(s) for s in self._interest))
            self._pubsub = fresh
            return fresh

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
                    await self._redis.publish(channel(space_id), message)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if loop.time() - queued > PUBLISH_PATIENCE_S:
                        logger.error("dropped an event of space %s: %s", space_id, exc)
                        break
                    await asyncio.sleep(0.2)

    async def _read(self, pubsub: PubSub) -> None:
        broken = False
        while True:
            if broken:  # never read from a pub/sub whose connection is gone: it stays silent
                await asyncio.sleep(0.5)
                try:
                    pubsub = await self._resubscribe()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    continue  # Redis still away
                broken = False
                logger.info("event bus resubscribed to %d spaces", len(self._interest))
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("event bus lost Redis; reconnecting")
                broken = True
                continue
            if message is None or message.get("type") != "message":
                continue
            await self._deliver(str(message["channel"]), message["data"])

    async def _deliver(self, chan: str, data: Any) -> None:
        space_id = chan.removeprefix("th:ev:")
        try:
            envelope = json.loads(data)
        except (TypeError, ValueError):
            logger.warning("ignored a malformed event on %s", chan)
            return
        if envelope.get("node") == self._node_id:
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
