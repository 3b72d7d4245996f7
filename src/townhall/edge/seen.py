"""Pure core of the listener counts at an edge: media fetches → Redis HyperLogLog writes
(or, for an origin without Redis, distinct listeners per space).

The edge's log line carries the ticket payload (base64url) of every served media request
(:mod:`townhall.edge.logship`). The ticket was verified by the edge before the line was
written, so the payload is decoded without checking it again.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from ..auth.links import decode_subject
from ..watch.edge_counts import BUCKET_TTL_SECONDS, all_key, bucket_key

MAX_PAYLOAD = 4096


@dataclass(frozen=True)
class MediaFetched:
    """A listener fetched a part or segment through the edge."""

    space: str
    """Space id from the URL (equal to the ticket's ``sid``)."""
    listener: str
    """The ticket's ``sub``."""
    at: float
    """Unix time the request was received."""


@dataclass(frozen=True)
class HllWrite:
    """One ``PFADD key members…`` (and ``EXPIRE key ttl`` when ``ttl`` is set)."""

    key: str
    """Redis key."""
    members: tuple[str, ...]
    """Listener ids, sorted."""
    ttl: int | None
    """Expiry in seconds, or None to keep the key."""


def listener_of(payload_b64: str) -> str | None:
    """The ``sub`` of a base64url JWT payload (what the Varnish edge logs), or of a listener
    link's ``l:{sub64}`` (what the nginx edge logs); None if it is neither."""
    if not payload_b64 or len(payload_b64) > MAX_PAYLOAD:
        return None
    if payload_b64.startswith("l:"):
        return decode_subject(payload_b64[2:])
    try:
        raw = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and sub else None


@dataclass
class SeenBatch:
    """Distinct listeners per (space, bucket) collected between two flushes."""

    buckets: dict[str, set[str]] = field(default_factory=dict)
    spaces: dict[str, set[str]] = field(default_factory=dict)

    def add(self, fetch: MediaFetched) -> None:
        self.buckets.setdefault(bucket_key(fetch.space, fetch.at), set()).add(fetch.listener)
        self.spaces.setdefault(fetch.space, set()).add(fetch.listener)

    def __len__(self) -> int:
        return sum(len(v) for v in self.buckets.values())

    def drain(self) -> list[HllWrite]:
        """The Redis writes for everything added since the last drain; empties the batch."""
        writes = [
            HllWrite(key, tuple(sorted(members)), BUCKET_TTL_SECONDS)
            for key, members in sorted(self.buckets.items())
        ]
        writes += [
            HllWrite(all_key(space), tuple(sorted(members)), None)
            for space, members in sorted(self.spaces.items())
        ]
        self.buckets = {}
        self.spaces = {}
        return writes

    def drain_listeners(self) -> dict[str, list[str]]:
        """Space → distinct listeners (sorted) added since the last drain, for an origin that
        counts them itself (no Redis); empties the batch."""
        out = {space: sorted(members) for space, members in sorted(self.spaces.items())}
        self.buckets = {}
        self.spaces = {}
        return out
