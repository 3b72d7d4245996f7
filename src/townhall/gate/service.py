"""The gate adapter: blocks, shedding, rate limits, the waiting room and ticket issue for
one join, answered the same way by the ASGI fast path and the FastAPI route.

Order of a join: the priority lane (host, co-hosts, speakers) skips everything below;
otherwise a blocked source or network is refused (403), a join over the adaptive
concurrency limit is shed (503 + Retry-After), one over a rate limit is refused (429 +
Retry-After); then the space is read (the 0.5 s cache), and the waiting room admits
(200 + listener ticket) or places (202 + position, ETA, polite ``poll_after`` and a signed
queue ticket). Every answer is reported to the watch.

An admission carries the listener ticket twice: as a JWT in ``playlist_url`` (LL-HLS) and as
a listener link in ``std_playlist_url`` (standard HLS, for edges that check links).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from redis.asyncio import Redis

from ..auth import Keyring
from ..config import Config
from ..spaces import SpaceState, Visibility
from ..store import StoredSpace
from ..store.redis_client import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE,
    UNAVAILABLE_CODE,
    UNAVAILABLE_DETAIL,
    redis_client,
)
from ..watch.observations import (
    ADMITTED,
    BAD_REQUEST,
    BLOCKED,
    LIMITED,
    NOT_FOUND,
    QUEUED,
    SHED,
    Observation,
)
from .blocks import Blocks
from .limits import Limits, MemoryLimits, RedisLimits, Rule, rule
from .network import network_of
from .queue_ticket import DRAW_SCALE, QueueTicket, QueueTicketError, QueueTicketSigner
from .revocations import RevocationList
from .room_store import MemoryRooms, RedisRooms, RoomStore, Settings
from .shedding import AdaptiveLimit
from .ticket_signer import ListenerLinkSigner, ListenerTicketSigner

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ..watch.redis_counts import ListenerTally

JSON = "application/json"
PROBLEM = "application/problem+json"
QUEUE_TICKET_GRACE = 2 * 3600
"""A queue ticket outlives the ETA it was issued with by this much."""

_TITLES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class SpaceSource(Protocol):
    """Where the gate reads a space (the 0.5 s cache of the space service)."""

    async def get_recent(self, space_id: str, max_age: float = 0.5) -> StoredSpace: ...


@dataclass(frozen=True)
class JoinCaller:
    """Who is joining, when the request carried a credential (resolved by the route)."""

    identity: str
    """``user:NAME`` or a token subject."""
    can_listen: bool
    """Carries a listen grant or is on stage (what a ticketed space needs)."""
    priority: bool
    """Host, co-host or speaker of this space (or an operator): the priority lane."""


@dataclass(frozen=True)
class Answer:
    """One join answered: what to send and what the watch is told."""

    status: int
    """HTTP status."""
    body: bytes
    """Response body (JSON or a problem document)."""
    headers: tuple[tuple[str, str], ...]
    """Headers besides the content type and length."""
    media_type: str
    """Content type."""
    outcome: str
    """The watch's word for it."""
    subject: str | None = None
    """Listener id when a ticket was issued."""


def problem(
    status: int, detail: str, code: str, outcome: str, headers: tuple[tuple[str, str], ...] = ()
) -> Answer:
    """A problem document shaped like :func:`townhall.api.problems.problem_response`."""
    body = {
        "type": f"https://townhall.dev/problems/{code.replace('_', '-')}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    return Answer(
        status,
        json.dumps(body, ensure_ascii=False).encode(),
        (("cache-control", "no-store"), *headers),
        PROBLEM,
        outcome,
    )


_NO_STORE = (("cache-control", "no-store"),)


def _ok(status: int, data: dict[str, Any], outcome: str, **extra: Any) -> Answer:
    headers: tuple[tuple[str, str], ...] = _NO_STORE
    if "retry_after" in extra:
        headers += (("retry-after", str(extra.pop("retry_after"))),)
    return Answer(status, orjson.dumps(data), headers, JSON, outcome, **extra)


def poll_after(eta: float) -> int:
    """Polite polling: a quarter of the ETA, between 1 and 30 s."""
    return int(min(30, max(1, math.ceil(eta / 4))))


class Gate:
    """Admission for one node (memory) or a cluster (Redis)."""

    def __init__(
        self,
        *,
        config: Config,
        keyring: Keyring,
        spaces: SpaceSource,
        listeners: ListenerTally,
        observe: Callable[[Observation], None],
        clock: Callable[[], float] = time.time,
        redis: Redis | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """``state_dir`` (an embedded node's data folder) keeps blocks and revocations across
        restarts when there is no Redis."""
        self.config = config
        self.spaces = spaces
        self.listeners = listeners
        self.observe = observe
        self.clock = clock
        self.limits: Limits = MemoryLimits() if redis is None else RedisLimits(redis)
        self.rooms: RoomStore = (
            MemoryRooms(config.admit_rate, config.capacity)
            if redis is None
            else RedisRooms(redis, config.admit_rate, config.capacity)
        )
        keep = None if state_dir is None else state_dir / "mitigations"
        self.blocks = Blocks(redis, None if keep is None else keep / "blocks.json")
        self.revocations = RevocationList(
            redis, None if keep is None else keep / "revocations.json"
        )
        self.shed = AdaptiveLimit(initial=64, min_limit=8, max_limit=1024)
        self.tickets = ListenerTicketSigner(keyring.active, config.ticket_ttl)
        self.links = ListenerLinkSigner(keyring.active)
        self.queue = QueueTicketSigner(
            {k.kid: k.secret for k in keyring.keys()}, keyring.active.kid
        )
        self.rules: list[tuple[Rule, Callable[[str], str]]] = []
        for name, rate, key in (
            ("source", config.join_rate_source, _same),
            ("network", config.join_rate_network, network_of),
            ("global", config.join_rate_global, _everyone),
        ):
            if rate is not None and rate > 0:
                self.rules.append((rule(name, rate), key))
        self.test_delay = config.gate_test_delay
        self._redis = redis
        self._active: dict[str, tuple[float, int]] = {}
        base = config.base_url
        self._playlist = base + "/hls/{}/t/{}/live.m3u8"
        self._std_playlist = base + "/hls/{}/l/{}/std.m3u8"
        self._state = base + "/api/spaces/{}/state"

    async def start(self) -> None:
        await self.blocks.start()
        await self.revocations.start()

    async def close(self) -> None:
        await self.revocations.close()
        await self.blocks.close()
        if self._redis is not None:
            await self._redis.aclose()

    # -- one join ------------------------------------------------------------------------------

    async def join(
        self,
        space_id: str,
        source: str,
        *,
        queue_ticket: str | None = None,
        caller: JoinCaller | None = None,
    ) -> Answer:
        """Answer one join and tell the watch."""
        started = time.perf_counter()
        now = self.clock()
        try:
            if caller is not None and caller.priority:
                answer = await self._decide(space_id, now, queue_ticket, caller)
            else:
                answer = await self._gated(space_id, source, now, started, queue_ticket, caller)
        except UNAVAILABLE as exc:  # Redis down or every pooled connection busy: shed, politely
            logger.warning("join for space %s shed: store unavailable: %s", space_id, exc)
            answer = problem(
                503,
                UNAVAILABLE_DETAIL,
                UNAVAILABLE_CODE,
                SHED,
                (("retry-after", str(RETRY_AFTER_SECONDS)),),
            )
        self.observe(
            Observation(
                now,
                "join",
                source,
                answer.outcome,
                answer.subject,
                space_id,
                time.perf_counter() - started,
            )
        )
        return answer

    async def _gated(
        self,
        space_id: str,
        source: str,
        now: float,
        started: float,
        queue_ticket: str | None,
        caller: JoinCaller | None,
    ) -> Answer:
        block = self.blocks.list.blocked(source, now)
        if block is not None:
            return problem(403, "your address is blocked from joining", "blocked", BLOCKED)
        shed = self.shed
        if not shed.try_acquire():
            wait = str(shed.retry_after())
            return problem(
                503,
                "too many joins are being handled right now; try again shortly",
                "overloaded",
                SHED,
                (("retry-after", wait),),
            )
        try:
            if self.rules:
                refusal = await self.limits.check([(r, key(source)) for r, key in self.rules], now)
                if refusal is not None:
                    wait = str(max(1, math.ceil(refusal.retry_after)))
                    return problem(
                        429,
                        _limit_detail(refusal.rule),
                        "rate_limited",
                        LIMITED,
                        (("retry-after", wait),),
                    )
            if self.test_delay:
                await asyncio.sleep(self.test_delay * shed.inflight)
            return await self._decide(space_id, now, queue_ticket, caller)
        finally:
            shed.release(time.perf_counter() - started)

    async def _decide(
        self, space_id: str, now: float, queue_ticket: str | None, caller: JoinCaller | None
    ) -> Answer:
        try:
            space = (await self.spaces.get_recent(space_id)).space
        except Exception as exc:  # the space service raises a 404 problem
            status = getattr(exc, "status", None)
            if status == 404:
                return problem(404, f"no space with id {space_id!r}", "no_such_space", NOT_FOUND)
            raise
        if space.visibility is Visibility.TICKETED and not (
            caller is not None and caller.can_listen
        ):
            return problem(
                403,
                "this space is ticketed: joining needs a listen grant",
                "ticket_required",
                BAD_REQUEST,
            )
        if space.state is SpaceState.ENDED:
            return problem(
                409, "this space has ended; play the recording instead", "ended", BAD_REQUEST
            )
        identity = caller.identity if caller is not None else None
        if identity and space.is_blocked(identity):
            return problem(403, "you are blocked from this space", "blocked", BLOCKED)
        live = space.state is SpaceState.LIVE
        rnd = os.urandom(20)  # one read: nonce (8 bytes), draw (3), ticket id (9)
        if caller is not None and caller.priority:
            return self._admit(space_id, identity or f"anon:{rnd[:8].hex()}", now, rnd[11:])
        active = await self._active_listeners(space_id, now) if live else 0
        if queue_ticket is not None:
            try:
                held = self.queue.verify(queue_ticket, space_id=space_id, now=now)
            except QueueTicketError as exc:
                return problem(exc.status, exc.detail, exc.code, exc.outcome)
            place = await self.rooms.place(
                space_id, now, seq=held.seq, draw=held.draw, live=live, active=active
            )
            nonce, token = held.nonce, queue_ticket
        else:
            draw = int.from_bytes(rnd[8:11]) % DRAW_SCALE
            entry = await self.rooms.enter(space_id, now, live=live, draw=draw, active=active)
            place, nonce, token = entry.place, rnd[:8].hex(), None
        if place.admitted:
            return self._admit(space_id, identity or f"anon:{nonce}", now, rnd[11:])
        eta = place.eta
        if not live and space.scheduled_start is not None:
            eta += max(0.0, space.scheduled_start.timestamp() - now)
        if token is None:
            token = self.queue.sign(
                QueueTicket(
                    space_id,
                    entry.seq,
                    draw if entry.seq is None else None,
                    nonce,
                    int(now + eta) + QUEUE_TICKET_GRACE,
                )
            )
        wait = poll_after(eta)
        return _ok(
            202,
            {
                "position": place.position,
                "eta_seconds": round(eta, 1),
                "poll_after": wait,
                "queue_ticket": token,
            },
            QUEUED,
            retry_after=wait,
        )

    def _admit(self, space_id: str, listener_id: str, now: float, jti: bytes) -> Answer:
        ticket, expires = self.tickets.issue(listener_id, space_id, now, jti)
        link = self.links.sign(listener_id, space_id, jti, expires)  # the same admission
        std_url = None if link is None else self._std_playlist.format(space_id, link)
        return _ok(
            200,
            {
                "listener_id": listener_id,
                "ticket": ticket,
                "expires_at": expires,
                "playlist_url": self._playlist.format(space_id, ticket),
                "std_playlist_url": std_url,
                "state_url": self._state.format(space_id),
            },
            ADMITTED,
            subject=listener_id,
        )

    async def _active_listeners(self, space_id: str, now: float) -> int:
        """The honest listener count (what the capacity is checked against), read once a
        second at most."""
        hit = self._active.get(space_id)
        if hit is not None and now - hit[0] < 1.0:
            return hit[1]
        count = (await self.listeners.counts(space_id, now)).current
        if len(self._active) > 10_000:
            self._active.clear()
        self._active[space_id] = (now, count)
        return count

    # -- operator controls -----------------------------------------------------------------------

    async def configure(self, space_id: str, *, rate: float, capacity: int | None) -> Settings:
        await self.rooms.configure(space_id, rate=rate, capacity=capacity)
        return await self.rooms.settings(space_id)


def _limit_detail(name: str) -> str:
    return {
        "source": "too many joins from your address; wait and try again",
        "network": "too many joins from your network; wait and try again",
    }.get(name, "too many joins right now; wait and try again")


def _same(source: str) -> str:
    return source


def _everyone(source: str) -> str:
    return "*"


def build_gate(services: Any) -> Gate:
    """The gate of an API node (``services`` is its :class:`townhall.api.services.Services`):
    in memory, or shared through Redis when ``config.redis_url`` is set. The signing keys are
    the node's ``keys.json`` (the cluster's keyring once a clustered node has adopted it)."""
    config: Config = services.config
    redis: Redis | None = None
    if config.redis_url:
        redis = redis_client(config.redis_url, decode_responses=True)
    return Gate(
        config=config,
        keyring=Keyring.load(config.data / "keys.json"),
        spaces=services.spaces,
        listeners=services.listeners,
        observe=services.observe,
        clock=services.clock,
        redis=redis,
        state_dir=config.data,
    )
