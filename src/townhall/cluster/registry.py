"""Which node runs each live space's media (its origin): embedded or shared through Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from ..config import Config
from ..store.redis_client import UNAVAILABLE
from ..tasks import stop_task

logger = logging.getLogger(__name__)

ORIGIN_TTL_MS = 3_000
"""Lease on a space's origin (``Config.origin_lease_ms``); short, so that a standby can take a
dead origin's spaces over within a few seconds (docs/failover.md)."""

HEARTBEAT_MS = 1_000
"""How often the leases are renewed (``Config.heartbeat_ms``)."""

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

# KEYS: n origin keys, then their n home keys. ARGV: node json, ttl ms.
# Returns per space 1 (still ours), 2 (was missing, e.g. Redis restarted empty: re-asserted)
# or 0 (another node holds it).
_RENEW = """
local out = {}
local n = #KEYS / 2
for i = 1, n do
  local current = redis.call('GET', KEYS[i])
  if current == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    out[i] = 1
  elseif not current then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    redis.call('SET', KEYS[n + i], ARGV[1])
    out[i] = 2
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

    def __init__(
        self, redis: Redis, *, ttl_ms: int = ORIGIN_TTL_MS, heartbeat_ms: int = HEARTBEAT_MS
    ) -> None:
        self._redis = redis
        self.redis = redis
        """The Redis client (the standby manager shares it)."""
        self._ttl_ms = ttl_ms
        self._heartbeat_s = min(heartbeat_ms, ttl_ms / 3) / 1000
        self.on_lost: Callable[[str], Awaitable[None]] | None = None
        """Called with a space id when another node holds a lease this node had (it must stop
        running that space: fencing after a takeover)."""
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
        try:
            raw = await self._redis.get(_origin_key(space_id))
        except Exception:
            if cached is None:
                raise
            logger.warning("Redis unavailable; using the last known origin of %s", space_id)
            return cached[1]  # Redis away: the last answer is still the best guess
        url = NodeInfo.from_json(str(raw)).url if raw is not None else None
        self._cache[space_id] = (now, url)
        if len(self._cache) > 10_000:
            self._cache.clear()
        return url

    async def owner_of(self, space_id: str) -> NodeInfo | None:
        """The node holding ``space_id``'s origin lease now (uncached), or None."""
        raw = await self._redis.get(_origin_key(space_id))
        return NodeInfo.from_json(str(raw)) if raw is not None else None

    def forget(self, space_id: str) -> None:
        """Drop the cached origin of ``space_id`` (it did not answer)."""
        self._cache.pop(space_id, None)

    async def home_of(self, space_id: str) -> str | None:
        home = await self.home_node(space_id)
        return home.url if home is not None else None

    async def home_node(self, space_id: str) -> NodeInfo | None:
        """The node that recorded ``space_id`` (its last origin), or None."""
        raw = await self._redis.get(_home_key(space_id))
        return NodeInfo.from_json(str(raw)) if raw is not None else None

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
                keys=[_origin_key(s) for s in space_ids] + [_home_key(s) for s in space_ids],
                args=[node.to_json(), self._ttl_ms],
            )
            for space_id, still in zip(space_ids, kept, strict=True):
                if int(still) == 2:
                    logger.warning("re-asserted the missing origin lease of space %s", space_id)
                if not int(still) and self._owned.pop(space_id, None) is not None:
                    logger.warning("lost the origin lease of space %s", space_id)
                    self._cache.pop(space_id, None)
                    if self.on_lost is not None:
                        await self.on_lost(space_id)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._heartbeat(), name="origin-heartbeat")

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _heartbeat(self) -> None:
        interval = self._heartbeat_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except UNAVAILABLE as exc:  # Redis away: retry next beat; the TTL tells the truth
                logger.warning("origin heartbeat failed (retrying next beat): %s", exc)
            except Exception:
                logger.exception("origin heartbeat failed")
