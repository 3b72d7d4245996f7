"""What the watch is fed: one record per request the gate or an edge answered, plus samples.

Adapters (gate, media routes, edge log shippers, the origin) build these and hand them to
:class:`townhall.watch.watch.Watch`; nothing here does I/O. Records are past tense: each says
what already happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["join", "playlist", "media", "state", "api", "other"]
"""What was asked for: a join (ticket request), an LL-HLS playlist, a part/segment/init, the
state document, another API call, anything else (unknown paths)."""

KINDS: Final[tuple[Kind, ...]] = ("join", "playlist", "media", "state", "api", "other")

# -- outcomes ---------------------------------------------------------------------------------
ADMITTED: Final = "admitted"
"""A join was admitted (a ticket was issued)."""
QUEUED: Final = "queued"
"""A join was placed in (or is still in) the waiting room."""
LIMITED: Final = "limited"
"""Refused by a rate limit (429)."""
SHED: Final = "shed"
"""Refused by load shedding (503)."""
BLOCKED: Final = "blocked"
"""Refused by a block list (403)."""
SERVED: Final = "served"
"""Answered normally (2xx/304)."""
MISS: Final = "miss"
"""An edge served it but had to go to the origin (a cache miss)."""
NOT_FOUND: Final = "not_found"
"""No such object (404/410)."""
BAD_REQUEST: Final = "bad_request"
"""Malformed request (400/422)."""
NO_TICKET: Final = "no_ticket"
"""A ticket was needed and none was presented."""
BAD_TICKET: Final = "bad_ticket"
"""A ticket that does not parse, or is for another space."""
EXPIRED_TICKET: Final = "expired_ticket"
"""A genuine ticket past its expiry (or revoked)."""
FORGED_TICKET: Final = "forged_ticket"
"""A ticket whose signature does not verify (unknown key id, wrong MAC, alg games)."""

OUTCOMES: Final = frozenset(
    {
        ADMITTED,
        QUEUED,
        LIMITED,
        SHED,
        BLOCKED,
        SERVED,
        MISS,
        NOT_FOUND,
        BAD_REQUEST,
        NO_TICKET,
        BAD_TICKET,
        EXPIRED_TICKET,
        FORGED_TICKET,
    }
)
"""Every outcome."""
REFUSED: Final = frozenset({LIMITED, SHED, BLOCKED, BAD_REQUEST, NO_TICKET})
"""Outcomes that refuse a request for reasons other than its ticket."""
INVALID_TICKET: Final = frozenset({BAD_TICKET, EXPIRED_TICKET, FORGED_TICKET})
"""Outcomes of a request that presented a ticket that is not valid."""
MISSING: Final = frozenset({NOT_FOUND, BAD_REQUEST})
"""Outcomes of requests for things that do not exist (cache-busting candidates)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One request that was answered (by the gate, the origin or an edge)."""

    at: float
    """Unix time it was answered."""
    kind: Kind
    """What was asked for (see :data:`Kind`)."""
    source: str
    """Client address (IPv4 or IPv6 text), as the edge or the proxy protocol saw it."""
    outcome: str
    """How it was answered: one of the outcome constants of this module."""
    subject: str | None = None
    """The listener id of a *valid* ticket presented (or issued, for an admitted join)."""
    space: str | None = None
    """Space the request was for, when known."""
    latency: float | None = None
    """Seconds from request to answer, when measured."""
    returning: bool | None = None
    """For joins: the listener was seen in an earlier space or follows the host (None when
    unknown)."""


@dataclass(frozen=True, slots=True)
class ConnectionSample:
    """Open connections of one server (origin or edge), sampled about once a second."""

    at: float
    """Unix time of the sample."""
    open_connections: int
    """Client connections open at ``at``."""
    completed_requests: int
    """Requests completed on this server since its previous sample."""
    server: str = "origin"
    """Which server sampled (each edge reports its own; the watch sums them)."""
    top_sources: tuple[tuple[str, int], ...] = ()
    """Optional: the addresses holding the most open connections, with their counts."""


@dataclass(frozen=True, slots=True)
class OriginSample:
    """Load of the origin (the node that packages media), sampled about once a second."""

    at: float
    """Unix time of the sample."""
    requests: float
    """Requests per second the origin answered over the last second."""
    cpu: float
    """Process CPU use, in cores (1.0 = one core busy)."""
