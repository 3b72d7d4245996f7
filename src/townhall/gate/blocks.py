"""Blocks at the gate: source addresses and networks refused before anything else runs.

:class:`BlockList` is the pure core (``now`` passed in): exact sources and the usual
networks (/24, /48) are dictionary lookups; other prefix lengths are checked by containment.
:class:`Blocks` is the adapter: in memory on an embedded node; with Redis, writes go to a
shared hash and every node reloads it within a second (:class:`~.shared.SharedHash`), so
the join path only ever reads memory. :meth:`BlockList.acl` renders the list for edge configs.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from redis.asyncio import Redis

from .network import network_of
from .shared import SharedHash, decode_records

logger = logging.getLogger(__name__)

KEY = "th:gate:blocks"


@dataclass(frozen=True)
class Block:
    """One block."""

    id: str
    """Identifier (for DELETE)."""
    source: str | None
    """A blocked address (normalised text), or None for a network block."""
    network: str | None
    """A blocked network in CIDR form, or None for a source block."""
    created_at: float
    """Unix time it was added."""
    expires_at: float | None
    """Unix time it lapses; None for until removed."""
    reason: str | None = None
    """Free text: who or what asked for it (e.g. the watch's verdict)."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def normalise(source: str | None, network: str | None) -> tuple[str | None, str | None]:
    """Canonical text of a source or network; ValueError when it is not one."""
    if (source is None) == (network is None):
        raise ValueError("give exactly one of 'source' or 'network'")
    if source is not None:
        ip = ipaddress.ip_address(source.strip())
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return str(ip), None
    assert network is not None
    return None, str(ipaddress.ip_network(network.strip(), strict=False))


class BlockList:
    """The blocks in force (pure)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Block] = {}
        self._sources: dict[str, Block] = {}
        self._networks: dict[str, Block] = {}
        self._other: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Block]] = []

    def replace(self, blocks: list[Block]) -> None:
        self._by_id = {b.id: b for b in blocks}
        self._sources = {b.source: b for b in blocks if b.source is not None}
        self._networks = {}
        self._other = []
        for b in blocks:
            if b.network is None:
                continue
            net = ipaddress.ip_network(b.network)
            if net.prefixlen == (24 if net.version == 4 else 48):
                self._networks[b.network] = b
            else:
                self._other.append((net, b))

    def add(self, block: Block) -> None:
        self.replace([*self._by_id.values(), block])

    def remove(self, block_id: str) -> bool:
        if block_id not in self._by_id:
            return False
        self.replace([b for i, b in self._by_id.items() if i != block_id])
        return True

    def __len__(self) -> int:
        return len(self._by_id)

    def blocked(self, source: str, now: float) -> Block | None:
        """The block that refuses ``source`` at ``now``, if any."""
        if not self._by_id:
            return None
        hit = self._sources.get(source) or self._networks.get(network_of(source))
        if hit is None and self._other:
            try:
                ip = ipaddress.ip_address(source)
            except ValueError:
                return None
            hit = next((b for net, b in self._other if ip in net), None)
        if hit is not None and hit.expires_at is not None and now >= hit.expires_at:
            return None
        return hit

    def active(self, now: float) -> list[Block]:
        return sorted(
            (b for b in self._by_id.values() if b.expires_at is None or now < b.expires_at),
            key=lambda b: b.created_at,
        )

    def acl(self, now: float) -> str:
        """One CIDR per line (sources as /32 or /128), for edge deny lists."""
        lines = []
        for b in self.active(now):
            if b.source is not None:
                ip = ipaddress.ip_address(b.source)
                lines.append(f"{ip}/{32 if ip.version == 4 else 128}")
            elif b.network is not None:
                lines.append(b.network)
        return "".join(f"{line}\n" for line in sorted(set(lines)))


class Blocks:
    """The node's block list, shared through Redis when there is one."""

    def __init__(self, redis: Redis | None = None, path: Path | None = None) -> None:
        self.list = BlockList()
        self._shared = SharedHash(redis, KEY, self._reload, path=path)

    def _reload(self, values: list[str]) -> None:
        self.list.replace(decode_records(values, Block, "block"))

    async def add(
        self,
        *,
        source: str | None,
        network: str | None,
        ttl: float | None,
        now: float,
        reason: str | None = None,
    ) -> Block:
        src, net = normalise(source, network)
        block = Block(
            secrets.token_hex(6), src, net, now, None if ttl is None else now + ttl, reason
        )
        self.list.add(block)
        await self._shared.put(block.id, json.dumps(block.to_dict()))
        return block

    async def remove(self, block_id: str) -> bool:
        found = self.list.remove(block_id)
        return await self._shared.delete(block_id) or found

    async def refresh(self) -> None:
        """Reload from Redis if another node changed the list."""
        await self._shared.refresh()

    async def start(self) -> None:
        await self._shared.start()

    async def close(self) -> None:
        await self._shared.close()
