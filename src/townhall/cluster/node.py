"""The cluster parts one node holds: its identity, the origin registry and the forwarder."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response

from ..api.problems import Problem
from .forward import Forwarder, was_forwarded
from .health import NodeHeartbeat
from .registry import LocalRegistry, NodeInfo, Registry


@dataclass
class Cluster:
    """This node within its cluster (an embedded node is a cluster of one)."""

    node: NodeInfo
    """Who this node is."""
    registry: Registry = field(default_factory=LocalRegistry)
    """Which node runs each live space."""
    forwarder: Forwarder | None = None
    """HTTP client to other nodes; None on an embedded node."""
    health: NodeHeartbeat | None = None
    """Keeps this node's liveness key in Redis; None on an embedded node."""
    control: Redis | None = None
    """The Redis client of the registry and the heartbeat (a pool of their own, closed with
    the cluster); None on an embedded node."""

    async def remote_origin(self, request: Request, space_id: str, *, ended: bool) -> str | None:
        """URL of another node that serves ``space_id``'s media, if this request should go
        there: the live origin, or after the end the node holding the recording."""
        if self.forwarder is None or was_forwarded(request):
            return None
        url = await self.registry.origin_of(space_id)
        if url is None and ended:
            url = await self.registry.home_of(space_id)
        return url if url is not None and url != self.node.url else None

    async def forward(self, request: Request, origin_url: str) -> Response:
        """Forward to the origin; if it does not answer (it died and another node may have
        taken over), drop the cached origin, look it up again and retry once."""
        assert self.forwarder is not None
        try:
            return await self.forwarder.forward(request, origin_url)
        except Problem as problem:
            space_id = request.path_params.get("space_id")
            forget = getattr(self.registry, "forget", None)
            if problem.code != "origin_unreachable" or not space_id or forget is None:
                raise
            forget(space_id)
            url = await self.registry.origin_of(space_id)
            if url is None or url in (origin_url, self.node.url):
                raise
            return await self.forwarder.forward(request, url)

    async def start(self) -> None:
        await self.registry.start()
        if self.health is not None:
            await self.health.start()

    async def close(self) -> None:
        if self.health is not None:
            await self.health.close()
        await self.registry.close()
        if self.forwarder is not None:
            await self.forwarder.close()
        if self.control is not None:
            await self.control.aclose()


def embedded() -> Cluster:
    """The cluster of an embedded node (no Redis): it owns every space."""
    return Cluster(NodeInfo("embedded", "http://127.0.0.1"))
