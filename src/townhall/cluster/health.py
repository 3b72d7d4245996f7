"""Node liveness: every node keeps ``th:node:{node_id}`` (its NodeInfo JSON) alive with a short
TTL, renewed each heartbeat. A node whose key is gone is dead (or cut off from Redis).

The standby election uses it (a standby claim names a node that must be alive), and operators
can list the nodes of a cluster with :func:`alive_nodes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis

from ..tasks import stop_task
from .registry import NodeInfo

logger = logging.getLogger(__name__)

NODE_PREFIX = "th:node:"


def node_key(node_id: str) -> str:
    return f"{NODE_PREFIX}{node_id}"


class NodeHeartbeat:
    """Keeps this node's liveness key in Redis; survives Redis restarts (it is re-created on
    the next beat)."""

    def __init__(self, redis: Redis, node: NodeInfo, *, interval_ms: int, ttl_ms: int) -> None:
        self._redis = redis
        self._node = node
        self._interval = interval_ms / 1000
        self._ttl_ms = ttl_ms
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> None:
        """Write the liveness key once."""
        await self._redis.set(node_key(self._node.node_id), self._node.to_json(), px=self._ttl_ms)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="node-heartbeat")

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        with contextlib.suppress(Exception):  # a clean stop says so at once
            await self._redis.delete(node_key(self._node.node_id))

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.beat()
                if failing:
                    logger.info("node heartbeat reaches Redis again")
                failing = False
            except Exception as exc:  # Redis away: keep beating, the TTL tells the truth
                if not failing:
                    logger.warning("node heartbeat failed: %s", exc)
                failing = True
            await asyncio.sleep(self._interval)


async def is_alive(redis: Redis, node_id: str) -> bool:
    """Whether ``node_id``'s liveness key exists."""
    return bool(await redis.exists(node_key(node_id)))


async def alive_nodes(redis: Redis) -> list[NodeInfo]:
    """Every node whose liveness key exists (SCAN; for operators and tests)."""
    out: list[NodeInfo] = []
    async for key in redis.scan_iter(match=f"{NODE_PREFIX}*", count=100):
        raw = await redis.get(key)
        if raw is not None:
            with contextlib.suppress(ValueError, KeyError):
                out.append(NodeInfo.from_json(str(raw)))
    return sorted(out, key=lambda n: n.node_id)
