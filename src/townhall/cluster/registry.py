"""Which node runs each live space's media (its origin): embedded or shared through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from ..config import Config

logger = logging.getLogger(__name__)

ORIGIN_TTL_MS = 15_000
"""Lease on a space's origin; the heartbeat renews it every third of this."""

LOOKUP_CACHE_SECONDS = 1.0
"""How long a node trusts a looked-up origin before asking Redis again."""

_WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class NodeInfo:
    """One API/media node of a cluster."""

    node_id: str
    """Stable name, e.g. ``host:port``; a restarted node keeps it and so its leases."""
    url: str
    """Internal base URL other nodes forward media requests to."""

    def to_json(self) -> str:
        return json.dumps({"id": self.node_id, "url": self.url}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NodeInfo:
        data = json.loads(text)
        return cls(str(data["id"]), str(data["url"]))


def node_identity(config: Config) -> NodeInfo:
    """This node's name and internal URL from the config (see ``node_id``/``node_url``)."""
    host = socket.gethostname() if config.host in _WILDCARDS else config.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    url = (config.node_url or f"http://{host}:{config.port}").rstrip("/")
    return NodeInfo(config.node_id or f"{socket.gethostname()}:{config.port}", url)


class Registry(Protocol):
    """Where each live space's media runs. One origin per space; any node may ask."""

    shared: bool
    """True when other nodes see the same registry (Redis)."""

    async def claim_origin(self, space_id: str, node: NodeInfo) -> NodeInfo:
        """Become the origin of ``space_id`` unless another node is; returns the owner."""
        ...

    async def origin_of(self, space_id: str) -> str | None:
        """URL of the node running ``space_id`` live, or None."""
        ...

    async def home_of(self, space_id: str) -> str | None:
        """URL of the node that recorded ``space_id`` (for replay after the end), or None."""
        ...

    async def release(self, space_id: str, node: NodeInfo) -> None:
        """Stop being the origin of ``space_id`` (only if ``node`` still is)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalRegistry:
    """Embedded single node: it owns every space and never forwards."""

    shared = False

    async def claim_origin(self, space_id: str, node: NodeInfo) -> NodeInfo:
        return node

    async def origin_of(self, space_id: str) -> str | None:
        return None

    async def home_of(self, space_id: str) -> str | None:
        return None

    async def release(self, space_id: str, node: NodeInfo) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


# KEYS: origin key, home key. ARGV: node json, ttl ms.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[2], ARGV[1])
  return ARGV[1]
end
if current == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return current
"""

# KEYS: origin keys. ARGV: node json, ttl ms. Returns 1/0 per key (still ours).
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _origin_key(space_id: str) -> str:
    return f"th:origin:{space_id}"


def _home_key(space_id: str) -> str:
    return f"th:home:{space_id}"


class RedisRegistry:
    """Origins as Redis leases: ``th:origin:{space}`` = node JSON, SET NX with a TTL that a
    heartbeat renews while the space runs here. ``th:home:{space}`` remembers (without TTL)
    which node holds the recording."""

    shared = True

    def __init__(self, redis: Redis, *, ttl_ms: int = ORIGIN_TTL_MS) -> None:
        self._redis = redis
        self._ttl_ms = ttl_ms
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._owned: dict[str, NodeInfo] = {}
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._task: asyncio.Task[None] | None = None

    async def claim_origin(self, space_id: str, node: NodeInfo) -> NodeInfo:
        raw = await self._claim(
            keys=[_origin_key(space_id), _home_key(space_id)],
            args=[node.to_json(), self._ttl_ms],
        )
        owner = NodeInfo.from_json(str(raw))
        if owner == node:
            self._owned[space_id] = node
        self._cache.pop(space_id, None)
        return owner

    async def origin_of(self, space_id: str) -> str | None:
        now = time.monotonic()
        cached = self._cache.get(space_id)
        if cached is not None and now - cached[0] < LOOKUP_CACHE_SECONDS:
            return cached[1]
        raw = await self._redis.get(_origin_key(space_id))
        url = NodeInfo.from_json(str(raw)).url if raw is not None else None
        self._cache[space_id] = (now, url)
        if len(self._cache) > 10_000:
            self._cache.clear()
        return url

    async def home_of(self, space_id: str) -> str | None:
        raw = await self._redis.get(_home_key(space_id))
        return NodeInfo.from_json(str(raw)).url if raw is not None else None

    async def release(self, space_id: str, node: NodeInfo) -> None:
        self._owned.pop(space_id, None)
        self._cache.pop(space_id, None)
        await self._release(keys=[_origin_key(space_id)], args=[node.to_json()])

    async def renew(self) -> None:
        """One heartbeat: extend every lease this node still holds; forget lost ones."""
        by_node: dict[NodeInfo, list[str]] = {}
        for space_id, node in list(self._owned.items()):
            by_node.setdefault(node, []).append(space_id)
        for node, space_ids in by_node.items():
            kept = await self._renew(
                keys=[_origin_key(s) for s in space_ids], args=[node.to_json(), self._ttl_ms]
            )
            for space_id, still in zip(space_ids, kept, strict=True):
                if not int(still) and self._owned.pop(space_id, None) is not None:
                    logger.warning("lost the origin lease of space %s", space_id)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._heartbeat(), name="origin-heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _heartbeat(self) -> None:
        interval = self._ttl_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except Exception:  # Redis away: retry next beat; the TTL tells the truth
                logger.exception("origin heartbeat failed")
