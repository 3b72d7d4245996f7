"""Declarative traffic mixes for surge and attack scenarios on loopback.

A :class:`Mix` is a list of :class:`Actor`s; each actor is a group of clients of one role,
with its own source range inside 127.0.0.0/8 (Linux answers on all of it, so every client
binds a distinct source address), a start time, a count and a rate. Roles:

``listener``  legitimate: joins (waits in the waiting room if queued, polling politely),
              then follows LL-HLS through the edge like a player (blocking reload for the next
              part, then the part); a share ``returning`` leaves after a while and joins again.
``flooder``   POSTs joins as fast as ``rate`` per client allows (a few sources).
``forger``    many sources presenting forged (and, with a key, expired) tickets: joins with a
              forged bearer token and media requests with forged tickets at the edge.
``buster``    joins once, then asks the edge for parts that do not exist (``part{random}``)
              and random names: cache misses that reach the origin, and 404s.
``hammerer``  joins once, then reloads the live playlist ``rate`` times a second.
``holder``    slowloris: opens ``conns`` connections to the API and trickles header bytes.

:func:`run_mix` runs one mix in the current event loop on the raw client of
:mod:`townhall.loadgen.client` and returns the generator's own accounting
(:class:`MixResult`): for legitimate listeners, how many were served (admitted and got
audio, or queued with an ETA), wrongly refused (401/403 at any step) or saw a 5xx. New mixes
are a few lines: see :data:`SCENARIOS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from .client import Connection, HttpError, Origin, Response, connect, fetch
from .hls import hint_position

Role = Literal["listener", "flooder", "forger", "buster", "hammerer", "holder"]
LEGIT: frozenset[str] = frozenset({"listener"})


@dataclass(frozen=True)
class Actor:
    """A group of clients of one role."""

    role: Role
    """What they do (see the module docstring)."""
    count: int
    """Clients (each with its own source address, cycling through ``sources``)."""
    sources: str
    """Source range in 127.0.0.0/8, e.g. ``127.10.0.0/16``."""
    start: float = 0.0
    """Seconds after the run's start when the first client starts."""
    spread: float = 0.0
    """Seconds over which the clients' starts are spread evenly (arrivals)."""
    rate: float = 1.0
    """Attackers: requests per second per client (holders: header bytes per second)."""
    returning: float = 0.0
    """Listeners: share that leave after ``stay`` seconds and join again."""
    stay: float = 6.0
    """Listeners: seconds a returning listener listens before leaving."""
    conns: int = 1
    """Holders: connections per client."""


@dataclass(frozen=True)
class Mix:
    """A scenario: actors, how long it runs, and what the watch should conclude."""

    name: str
    """Short name (``flash_crowd``…)."""
    actors: tuple[Actor, ...]
    """Who takes part."""
    duration: float = 22.0
    """Seconds from the start to the end of the run."""
    expect_attacks: tuple[str, ...] = ()
    """Attack kinds the watch should name (empty: none)."""
    expect_crowd: bool = False
    """The watch should see a flash crowd (alone, or ``both`` with attacks)."""
    description: str = ""

    @property
    def attack_start(self) -> float:
        """When the first attacker starts (the clock for the time to the verdict)."""
        starts = [a.start for a in self.actors if a.role not in LEGIT]
        return min(starts) if starts else min(a.start for a in self.actors)


@dataclass
class ListenerLog:
    """What one legitimate listener got."""

    joined: bool = False
    queued_eta: float | None = None
    parts: int = 0
    refused: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    limited: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_audio: float | None = None

    @property
    def served(self) -> bool:
        """Got audio, or is waiting in line with an ETA; never refused or 5xx'd."""
        ok = self.parts > 0 or (not self.joined and self.queued_eta is not None)
        return ok and not self.refused and not self.server_errors


@dataclass
class MixResult:
    """The generator's own accounting of one run."""

    mix: str
    listeners: list[ListenerLog] = field(default_factory=list)
    attack_status: Counter[str] = field(default_factory=Counter)
    """``role:status`` (or ``role:error``) counts of attack requests."""
    started_at: float = 0.0
    """Unix time of the run's start."""
    tickets: list[dict[str, Any]] = field(default_factory=list)
    """Tickets the attackers that join obtained (for the test's bookkeeping)."""

    def summary(self) -> dict[str, Any]:
        legit = self.listeners
        served = sum(1 for x in legit if x.served)
        return {
            "mix": self.mix,
            "legit": len(legit),
            "served": served,
            "served_share": served / len(legit) if legit else 1.0,
            "wrongly_refused": sum(1 for x in legit if x.refused),
            "server_errors": sum(x.server_errors for x in legit),
            "admitted": sum(1 for x in legit if x.joined),
            "queued_waiting": sum(1 for x in legit if not x.joined and x.queued_eta is not None),
            "limited_retries": sum(x.limited for x in legit),
            "parts": sum(x.parts for x in legit),
            "attack_requests": sum(self.attack_status.values()),
            "attack_status": dict(self.attack_status),
        }


def addresses(cidr: str, count: int, skip: int = 0) -> list[str]:
    """``count`` host addresses of ``cidr`` (inside 127.0.0.0/8), after the first ``skip``.
    A range wider than a /24 is dealt round robin over its /24s (a crowd comes from many
    networks), and .0/.255 hosts are never used."""
    net = ipaddress.ip_network(cidr, strict=False)
    if not isinstance(net, ipaddress.IPv4Network) or not net.subnet_of(
        ipaddress.IPv4Network("127.0.0.0/8")
    ):
        raise ValueError(f"{cidr} is not inside 127.0.0.0/8")
    subnets = list(net.subnets(new_prefix=24))[:256] if net.prefixlen < 24 else [net]
    per_net = [[h for h in sub.hosts() if int(h) & 0xFF not in (0, 255)] for sub in subnets]
    capacity = sum(len(h) for h in per_net)
    if skip + count > capacity:
        raise ValueError(f"{cidr} has fewer than {skip + count} usable addresses")
    out: list[str] = []
    n = len(per_net)
    for k in range(skip, skip + count):
        out.append(str(per_net[k % n][k // n]))
    return out


# -- the run --------------------------------------------------------------------------------


@dataclass
class Target:
    """Where a mix runs."""

    api: str
    """API node base URL (joins)."""
    edge: str
    """Edge base URL (media)."""
    space: str
    """Space id."""
    expired_ticket: str | None = None
    """A genuine but expired ticket (forgers replay it), when the caller can sign one."""


class _Run:
    def __init__(self, mix: Mix, target: Target, t0: float) -> None:
        self.mix = mix
        self.target = target
        self.t0 = t0
        self.end = t0 + mix.duration
        self.api = Origin.from_url(target.api)
        self.edge = Origin.from_url(target.edge)
        self.result = MixResult(mix.name, started_at=t0)
        self.tasks: list[asyncio.Task[None]] = []
        self.holders: list[asyncio.Transport] = []
        self.conns: list[Connection] = []

    def left(self) -> float:
        return self.end - time.time()

    async def sleep_until(self, at: float) -> None:
        delay = at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)

    def count(self, role: str, what: str | int) -> None:
        self.result.attack_status[f"{role}:{what}"] += 1

    async def conn(self, origin: Origin, source: str) -> Connection:
        c = await connect(origin, source, timeout=5.0)
        self.conns.append(c)
        if len(self.conns) > 4096:  # forget the closed ones now and then
            self.conns = [x for x in self.conns if x.usable or x._waiter is not None]
        return c

    # -- joining (listeners and attackers that need a ticket) --------------------------------

    async def join(self, source: str, log: ListenerLog | None) -> dict[str, Any] | None:
        """Join politely: wait in line when queued, retry limits after Retry-After."""
        conn: Connection | None = None
        body = b""
        path = f"/api/spaces/{self.target.space}/join"
        while self.left() > 0:
            try:
                if conn is None or not conn.usable:
                    conn = await self.conn(self.api, source)
                r = await fetch(conn, "POST", path, 10.0, body, "application/json")
            except HttpError as exc:
                if log is not None:
                    log.errors[exc.kind] += 1
                conn = None
                await asyncio.sleep(1.0)
                continue
            if r.status == 200:
                if conn is not None:
                    conn.close()
                data: dict[str, Any] = orjson.loads(r.body)
                return data
            if r.status == 202:
                answer = orjson.loads(r.body)
                if log is not None:
                    log.queued_eta = float(answer["eta_seconds"])
                body = orjson.dumps({"queue_ticket": answer["queue_ticket"]})
                await asyncio.sleep(float(answer["poll_after"]))
                continue
            if r.status in (429, 503):
                if log is not None:
                    if r.status == 503:
                        log.server_errors += 0  # shedding is a polite 503: retried
                    log.limited += 1
                await asyncio.sleep(random.uniform(1.0, 2.0))
                continue
            if log is not None:
                if r.status >= 500:
                    log.server_errors += 1
                else:
                    log.refused[r.status] += 1
            return None
        return None

    def on_edge(self, url: str) -> str:
        """The path of ``url`` (the edge is where it is fetched)."""
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    # -- roles ---------------------------------------------------------------------------------

    async def listener(self, actor: Actor, source: str, start: float, returning: bool) -> None:
        await self.sleep_until(start)
        sessions = 2 if returning else 1
        for session in range(sessions):
            log = ListenerLog()
            self.result.listeners.append(log)
            ticket = await self.join(source, log)
            if ticket is None:
                return
            log.joined = True
            stop = time.time() + actor.stay if returning and session == 0 else self.end
            await self.play(source, ticket["playlist_url"], log, stop)
            if session == 0 and returning:
                log_gap = random.uniform(0.5, 2.0)
                await asyncio.sleep(log_gap)

    async def play(self, source: str, playlist_url: str, log: ListenerLog, stop: float) -> None:
        base = self.on_edge(playlist_url).rsplit("/", 1)[0]
        conn: Connection | None = None
        position: tuple[int, int] | None = None
        while time.time() < min(stop, self.end):
            try:
                if conn is None or not conn.usable:
                    conn = await self.conn(self.edge, source)
                if position is None:
                    r = await fetch(conn, "GET", f"{base}/live.m3u8", 10.0)
                else:
                    msn, part = position
                    r = await fetch(
                        conn, "GET", f"{base}/live.m3u8?_HLS_msn={msn}&_HLS_part={part}", 10.0
                    )
                if not self.judge(r, log):
                    await asyncio.sleep(0.5)
                    continue
                hint = hint_position(r.body)
                if hint is None:
                    await asyncio.sleep(0.3)
                    continue
                if position is None:
                    position = hint
                    continue
                r = await fetch(conn, "GET", f"{base}/part{position[0]}.{position[1]}.m4s", 10.0)
                if self.judge(r, log):
                    log.parts += 1
                    if log.first_audio is None:
                        log.first_audio = time.time()
                position = hint
            except HttpError as exc:
                log.errors[exc.kind] += 1
                conn = None
                await asyncio.sleep(0.2)
        if conn is not None:
            conn.close()

    def judge(self, r: Response, log: ListenerLog) -> bool:
        if r.status == 200:
            return True
        if r.status in (401, 403):
            log.refused[r.status] += 1
        elif r.status >= 500 and r.status != 503:
            log.server_errors += 1
        return False

    async def paced(
        self,
        actor: Actor,
        source: str,
        start: float,
        origin: Origin,
        request: Callable[[], tuple[str, str, bytes, str]],
    ) -> None:
        """Send ``request()`` ``actor.rate`` times a second per client until the end."""
        await self.sleep_until(start)
        conn: Connection | None = None
        gap = 1.0 / actor.rate
        nxt = time.time()
        while self.left() > 0:
            method, path, body, ctype = request()
            try:
                if conn is None or not conn.usable:
                    conn = await self.conn(origin, source)
                r = await fetch(conn, method, path, 5.0, body, ctype)
                self.count(actor.role, r.status)
            except HttpError as exc:
                self.count(actor.role, exc.kind)
                conn = None
                await asyncio.sleep(0.2)
            nxt += gap
            delay = nxt - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                nxt = time.time()
        if conn is not None:
            conn.close()

    async def flooder(self, actor: Actor, source: str, start: float) -> None:
        path = f"/api/spaces/{self.target.space}/join"
        await self.paced(actor, source, start, self.api, lambda: ("POST", path, b"", ""))

    async def forger(self, actor: Actor, source: str, start: float) -> None:
        sid = self.target.space
        expired = self.target.expired_ticket

        def request() -> tuple[str, str, bytes, str]:
            ticket = expired if expired and random.random() < 0.3 else forged_ticket(sid)
            if random.random() < 0.5:
                return ("GET", f"/hls/{sid}/t/{ticket}/live.m3u8", b"", "")
            return ("GET", f"/hls/{sid}/t/{ticket}/init.mp4", b"", "")

        await self.paced(actor, source, start, self.edge, request)

    async def forger_joins(self, actor: Actor, source: str, start: float) -> None:
        """Forged bearer tokens on the join (a distributed join flood with bad credentials)."""
        await self.sleep_until(start)
        sid = self.target.space
        gap = 1.0 / actor.rate
        conn: Connection | None = None
        while self.left() > 0:
            token = forged_ticket(sid)
            try:
                if conn is None or not conn.usable:
                    conn = await self.conn(self.api, source)
                head = f"/api/spaces/{sid}/join"
                fut = _request_with_auth(conn, head, token)
                loop = asyncio.get_running_loop()
                handle = loop.call_later(5.0, _cancel, conn, fut)
                try:
                    r = await fut
                finally:
                    handle.cancel()
                self.count("forger_join", r.status)
            except HttpError as exc:
                self.count("forger_join", exc.kind)
                conn = None
            await asyncio.sleep(gap)

    async def with_ticket(
        self, actor: Actor, source: str, start: float, make: Callable[[str], str]
    ) -> None:
        await self.sleep_until(start)
        ticket = await self.join(source, None)
        if ticket is None:
            self.count(actor.role, "no_ticket")
            return
        self.result.tickets.append({"role": actor.role, "source": source, **ticket})
        base = self.on_edge(ticket["playlist_url"]).rsplit("/", 1)[0]
        await self.paced(
            actor, source, time.time(), self.edge, lambda: ("GET", make(base), b"", "")
        )

    async def buster(self, actor: Actor, source: str, start: float) -> None:
        def make(base: str) -> str:
            if random.random() < 0.5:
                return f"{base}/part{random.randrange(10**6, 10**9)}.0.m4s"
            return f"{base}/{os.urandom(6).hex()}.m4s"

        await self.with_ticket(actor, source, start, make)

    async def hammerer(self, actor: Actor, source: str, start: float) -> None:
        await self.with_ticket(actor, source, start, lambda base: f"{base}/live.m3u8")

    async def holder(self, actor: Actor, source: str, start: float) -> None:
        await self.sleep_until(start)
        loop = asyncio.get_running_loop()
        transports: list[asyncio.Transport] = []
        for _ in range(actor.conns):
            try:
                transport, _ = await loop.create_connection(
                    asyncio.Protocol, self.api.host, self.api.port, local_addr=(source, 0)
                )
            except OSError as exc:
                self.count("holder", type(exc).__name__)
                continue
            transport.write(f"GET /healthz HTTP/1.1\r\nHost: {self.api.authority}\r\n".encode())
            transports.append(transport)
            self.holders.append(transport)
            self.count("holder", "open")
        n = 0
        while self.left() > 0:
            await asyncio.sleep(max(1.0 / actor.rate, 0.5))
            n += 1
            for t in transports:
                if not t.is_closing():
                    t.write(f"X-Slow-{n}: a\r\n".encode())
        for t in transports:
            t.close()

    # -- scheduling ------------------------------------------------------------------------------

    def spawn(self) -> None:
        loop = asyncio.get_running_loop()
        offset: dict[str, int] = {}
        for actor in self.mix.actors:
            skip = offset.get(actor.sources, 0)
            offset[actor.sources] = skip + actor.count
            sources = addresses(actor.sources, actor.count, skip)
            rng = random.Random(f"{self.mix.name}:{actor.role}:{actor.sources}")
            for i, source in enumerate(sources):
                start = self.t0 + actor.start + (actor.spread * i / max(1, actor.count))
                coro: Any
                if actor.role == "listener":
                    coro = self.listener(actor, source, start, rng.random() < actor.returning)
                elif actor.role == "flooder":
                    coro = self.flooder(actor, source, start)
                elif actor.role == "forger":
                    coro = (
                        self.forger_joins(actor, source, start)
                        if i % 2
                        else self.forger(actor, source, start)
                    )
                elif actor.role == "buster":
                    coro = self.buster(actor, source, start)
                elif actor.role == "hammerer":
                    coro = self.hammerer(actor, source, start)
                else:
                    coro = self.holder(actor, source, start)
                self.tasks.append(loop.create_task(coro))


def forged_ticket(space: str) -> str:
    """A ticket-shaped token with a made-up signature (and a plausible header and payload)."""
    header = _b64(b'{"alg":"HS256","kid":"' + os.urandom(4).hex().encode() + b'","typ":"JWT"}')
    claims = {
        "iss": "townhall",
        "sub": f"anon:{os.urandom(8).hex()}",
        "sid": space,
        "grants": ["listen"],
        "exp": int(time.time()) + 3600,
    }
    return f"{header}.{_b64(orjson.dumps(claims))}.{_b64(os.urandom(32))}"


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _request_with_auth(conn: Connection, path: str, token: str) -> asyncio.Future[Response]:
    # the raw client has no header argument: a bearer token rides in a hand-written request
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Response] = loop.create_future()
    transport = conn._transport
    if not conn.usable or transport is None:
        fut.set_exception(HttpError("closed", "connection not usable"))
        return fut
    conn._waiter = fut
    transport.write(
        f"POST {path} HTTP/1.1\r\nHost: {conn.origin.authority}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n".encode("latin-1")
    )
    return fut


def _cancel(conn: Connection, fut: asyncio.Future[Response]) -> None:
    if not fut.done():
        fut.set_exception(HttpError("timeout", "no response in time"))
        conn.close()


async def run_mix(mix: Mix, target: Target, *, t0: float | None = None) -> MixResult:
    """Run ``mix`` against ``target`` until its duration has passed (plus a short grace for
    requests in flight); the generator's accounting."""
    run = _Run(mix, target, t0 if t0 is not None else time.time())
    run.spawn()
    try:
        await asyncio.wait(run.tasks, timeout=mix.duration + 12)
    finally:
        for task in run.tasks:
            task.cancel()
        for task in run.tasks:
            with contextlib.suppress(BaseException):
                await task
        for t in run.holders:
            t.close()
        for c in run.conns:
            c.close()
        await asyncio.sleep(0)  # let the transports finish closing
    return run.result


# -- the scenarios -----------------------------------------------------------------------------

CROWD = Actor("listener", 240, "127.10.0.0/16", start=1.0, spread=8.0, returning=0.1)
"""A flash crowd: 240 listeners arriving over 8 s from 240 addresses in many /24s."""


def _crowd(start: float = 1.0, count: int = 240) -> Actor:
    return Actor("listener", count, "127.10.0.0/16", start=start, spread=8.0, returning=0.1)


SCENARIOS: dict[str, Mix] = {
    m.name: m
    for m in (
        Mix("flash_crowd", (_crowd(),), expect_crowd=True, description="a crowd alone"),
        Mix(
            "join_flood",
            (
                Actor("listener", 60, "127.10.0.0/16", start=0.5, spread=15.0),
                Actor("flooder", 4, "127.66.1.0/24", start=4.0, rate=60.0),
            ),
            expect_attacks=("join_flood",),
            description="a few sources joining 60 times a second each",
        ),
        Mix(
            "forged_tickets",
            (
                Actor("listener", 60, "127.10.0.0/16", start=0.5, spread=15.0),
                Actor("forger", 200, "127.77.0.0/16", start=4.0, rate=2.0),
            ),
            expect_attacks=("forged_tickets",),
            description="200 sources with forged or expired tickets, joins and media",
        ),
        Mix(
            "cache_busting",
            (
                Actor("listener", 60, "127.10.0.0/16", start=0.5, spread=15.0),
                Actor("buster", 20, "127.88.0.0/16", start=4.0, rate=10.0),
            ),
            expect_attacks=("cache_busting",),
            description="20 ticket holders asking the edges for random parts and names",
        ),
        Mix(
            "playlist_hammering",
            (
                Actor("listener", 60, "127.10.0.0/16", start=0.5, spread=15.0),
                Actor("hammerer", 8, "127.99.0.0/16", start=4.0, rate=30.0),
            ),
            expect_attacks=("playlist_hammering",),
            description="8 valid tickets reloading the playlist 30 times a second",
        ),
        Mix(
            "slowloris",
            (
                Actor("listener", 60, "127.10.0.0/16", start=0.5, spread=15.0),
                Actor("holder", 12, "127.111.0.0/16", start=4.0, rate=0.5, conns=30),
            ),
            expect_attacks=("slowloris",),
            description="12 addresses holding 30 connections each, trickling headers",
        ),
        Mix(
            "crowd_and_attack",
            (
                _crowd(count=200),
                Actor("flooder", 3, "127.66.2.0/24", start=3.0, rate=60.0),
                Actor("forger", 120, "127.77.0.0/16", start=3.0, rate=2.0),
            ),
            expect_attacks=("join_flood", "forged_tickets"),
            expect_crowd=True,
            description="a flash crowd with a join flood and forged tickets in it",
        ),
    )
}
"""The seven scenarios of the surge tests (scaled for a 2-core machine, ~22 s each)."""
