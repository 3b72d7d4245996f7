"""Feeding the watch what the edges (and the origin's sockets) see.

Path: each edge runs one ``varnishncsa`` that prints one line per ``/hls/`` request
(:data:`OBS_FORMAT`; :mod:`townhall.edge.logship` reads it once for the listener counts and
for this); :class:`EdgeObserver` turns lines into compact rows
(:func:`edge_row`), keeps them for one second and, with a connection sample of the edge's
listening socket (:func:`tcp_connections` over ``/proc/net/tcp``), appends one entry to the
Redis stream :data:`STREAM` (``XADD … MAXLEN ~``). Above ``max_rows`` a second, a uniform
sample is shipped with its weight. Every API node runs :func:`consume`, which reads the
stream and hands observations and samples to its :class:`~townhall.watch.watch.Watch`.

The origin reports itself: :class:`RequestCounter` (pure ASGI, outermost) counts completed
and in-flight requests; :func:`sample_origin` turns that, the process CPU and the sockets of
the listening port into a :class:`ConnectionSample` and an :class:`OriginSample` each second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from starlette.types import ASGIApp, Receive, Scope, Send

from ..edge.seen import listener_of
from .observations import (
    BAD_REQUEST,
    BAD_TICKET,
    BLOCKED,
    EXPIRED_TICKET,
    FORGED_TICKET,
    KINDS,
    LIMITED,
    MISS,
    NO_TICKET,
    NOT_FOUND,
    OUTCOMES,
    SERVED,
    SHED,
    ConnectionSample,
    Kind,
    Observation,
    OriginSample,
)
from .watch import Watch

logger = logging.getLogger(__name__)

STREAM = "th:obs"
"""Redis stream of observation batches (one entry per edge per second)."""
STREAM_MAXLEN = 600
"""Entries kept (about a minute of ten edges)."""
OBS_FORMAT = (
    "%h %s %{Varnish:handling}x %{%s}t %U |%{VCL_Log:th_out}x|%{VCL_Log:th_nm}x|%{VCL_Log:th_tp}x"
)
"""varnishncsa ``-F`` format of the observation log: client, status, hit/miss, time, path
(truncated by Varnish's log record length, so the VCL also logs what is needed), then
``|``-separated: the refusal code, the media name and the ticket payload (an absent tag
prints nothing)."""
OBS_QUERY = 'ReqURL ~ "^/(hls/|_edge/probe$)"'
"""varnishncsa ``-q``: the requests the watch and the listener counts care about at an edge,
and ``edge run``'s probe (it proves the reader is attached)."""
MAX_ROWS = 5_000
"""Rows shipped per second before sampling starts."""
MAX_WEIGHT = 1e6
"""Largest weight a shipped batch may claim (requests one row stands for)."""
TOP_HOLDERS = 10

EDGE_CODES = {
    "bad_signature": FORGED_TICKET,
    "unknown_key": FORGED_TICKET,
    "bad_algorithm": FORGED_TICKET,
    "expired_token": EXPIRED_TICKET,
    "revoked_token": EXPIRED_TICKET,
    "malformed_token": BAD_TICKET,
    "wrong_space": BAD_TICKET,
    "missing_grant": BAD_TICKET,
    "ticket_required": NO_TICKET,
    "no_such_media": NOT_FOUND,
    "bad_hls_request": BAD_REQUEST,
    "method_not_allowed": BAD_REQUEST,
    "blocked": BLOCKED,
}
"""Refusal codes the VCL logs (``th_out``) → watch outcomes."""

Row = tuple[float, str, str, str, str | None, str | None]
"""(at, source, outcome, kind, subject, space): one observation, compactly."""


# -- pure: edge log lines -------------------------------------------------------------------


def _status_outcome(status: int, handling: str) -> str:
    if status in (200, 206, 304):
        return SERVED if handling == "hit" else MISS
    if status in (404, 410):
        return NOT_FOUND
    if status in (400, 405, 422):
        return BAD_REQUEST
    if status in (401, 403):
        return BAD_TICKET
    if status == 429:
        return LIMITED
    return SHED


def edge_row(line: str, now: float, subjects: dict[str, str | None] | None = None) -> Row | None:
    """One observation-log line (:data:`OBS_FORMAT`) → a row, or None when it is not one.
    ``subjects`` caches ticket payload → ``sub`` (a listener presents one ticket many times)."""
    pieces = line.rstrip("\r\n").rsplit("|", 3)
    if len(pieces) != 4:
        return None
    head, code, name, payload = pieces
    fields = head.split()
    if len(fields) != 5 or not fields[1].isdigit():
        return None
    source, status, handling, when, path = fields
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "hls":
        return None
    space = parts[2] or None
    name = name or parts[-1]
    kind: Kind = "playlist" if name.endswith(".m3u8") else "media"
    outcome = EDGE_CODES.get(code) if code else None
    if outcome is None:
        outcome = _status_outcome(int(status), handling)
    subject: str | None = None
    if outcome in (SERVED, MISS) and payload:
        if subjects is not None and payload in subjects:
            subject = subjects[payload]
        else:
            subject = listener_of(payload)
            if subjects is not None:
                if len(subjects) > 50_000:
                    subjects.clear()
                subjects[payload] = subject
    at = float(when) if when.isdigit() else now
    return (at, source, outcome, kind, subject, space)


def tcp_connections(texts: Iterable[str], port: int) -> Counter[str]:
    """Established connections to local ``port`` per remote address, from the text of
    ``/proc/net/tcp`` (IPv4) and ``/proc/net/tcp6``."""
    want = f"{port:04X}"
    out: Counter[str] = Counter()
    for text in texts:
        for line in text.splitlines()[1:]:
            cols = line.split()
            if len(cols) < 4 or cols[3] != "01":
                continue
            local, remote = cols[1], cols[2]
            if local.rsplit(":", 1)[-1] != want:
                continue
            out[_address(remote.rsplit(":", 1)[0])] += 1
    return out


def _address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    flat = b"".join(words)
    if flat[:12] == b"\0" * 10 + b"\xff\xff":
        return ".".join(str(b) for b in flat[12:])
    import ipaddress

    return str(ipaddress.IPv6Address(flat))


def read_tcp_tables() -> list[str]:
    """The text of ``/proc/net/tcp`` and ``/proc/net/tcp6`` (empty when unavailable)."""
    out: list[str] = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            with open(path) as fh:
                out.append(fh.read())
    return out


def connection_sample(
    at: float, holders: Counter[str], completed: int, server: str
) -> ConnectionSample:
    return ConnectionSample(
        at=at,
        open_connections=sum(holders.values()),
        completed_requests=completed,
        server=server,
        top_sources=tuple(holders.most_common(TOP_HOLDERS)),
    )


# -- pure: batches --------------------------------------------------------------------------


@dataclass
class Batch:
    """Rows of one edge between two flushes, and what goes into the stream."""

    edge: str
    max_rows: int = MAX_ROWS
    rows: list[Row] = field(default_factory=list)
    seen: int = 0

    def add(self, row: Row) -> None:
        """Reservoir sampling above ``max_rows``: every row has the same chance to ship."""
        self.seen += 1
        if len(self.rows) < self.max_rows:
            self.rows.append(row)
            return
        slot = random.randrange(self.seen)
        if slot < self.max_rows:
            self.rows[slot] = row

    def drain(self, now: float, conn: ConnectionSample | None) -> bytes:
        weight = self.seen / len(self.rows) if self.rows else 1.0
        entry: dict[str, Any] = {"e": self.edge, "t": now, "w": weight, "r": self.rows}
        if conn is not None:
            entry["c"] = [
                conn.open_connections,
                conn.completed_requests,
                [list(p) for p in conn.top_sources],
            ]
        self.rows, self.seen = [], 0
        return orjson.dumps(entry)


Decoded = tuple[list[tuple[Observation, int]], ConnectionSample | None]
"""What :func:`decode_entry` makes of one batch: observations with their weights, and the
edge's connection sample."""


def decode_entry(data: bytes | str | dict[str, Any]) -> Decoded:
    """A stream entry (or the same document already parsed) → observations, each with how
    many requests it stands for (a sampled row's weight, randomly rounded; rows rounded to 0
    are left out), and the edge's connection sample."""
    entry = data if isinstance(data, dict) else orjson.loads(data)
    if not isinstance(entry, dict):
        raise TypeError("an observation batch is a JSON object")
    weight = float(entry.get("w", 1.0))
    if not 1.0 <= weight <= MAX_WEIGHT:
        raise ValueError(f"weight {weight} is outside 1..{MAX_WEIGHT:g}")
    whole, fraction = int(weight), weight - int(weight)
    edge = str(entry.get("e", "edge"))
    rows = entry.get("r", ())
    if not isinstance(rows, list | tuple) or len(rows) > MAX_ROWS:
        raise ValueError(f"rows must be a list of at most {MAX_ROWS}")
    out: list[tuple[Observation, int]] = []
    for row in rows:
        obs = _observation(row)
        copies = whole + (1 if fraction and random.random() < fraction else 0)
        if copies:
            out.append((obs, copies))
    conn: ConnectionSample | None = None
    c = entry.get("c")
    if c is not None:
        conn = ConnectionSample(
            at=float(entry["t"]),
            open_connections=int(c[0]),
            completed_requests=int(c[1]),
            server=f"edge:{edge}",
            top_sources=tuple((str(s), int(n)) for s, n in c[2]),
        )
    return out, conn


def _observation(row: Any) -> Observation:
    """One shipped row ``[at, source, outcome, kind, subject, space]``, checked."""
    if not isinstance(row, list | tuple) or len(row) != 6:
        raise ValueError("a row is [at, source, outcome, kind, subject, space]")
    at, source, outcome, kind, subject, space = row
    if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at):
        raise ValueError(f"row time {at!r} is not a number")
    if not isinstance(source, str) or outcome not in OUTCOMES or kind not in KINDS:
        raise ValueError(f"row {row!r} has an unknown source, outcome or kind")
    if not (subject is None or isinstance(subject, str)):
        raise ValueError("row subject must be a string or null")
    if not (space is None or isinstance(space, str)):
        raise ValueError("row space must be a string or null")
    return Observation(float(at), kind, source, outcome, subject, space)


# -- adapters: the edge side ----------------------------------------------------------------


class EdgeObserver:
    """Turns an edge's observation-log lines into rows; :meth:`drain` gives one batch (the
    edge's log reader ships it every second, to :data:`STREAM` or to the origin)."""

    def __init__(
        self,
        edge: str,
        port: int,
        *,
        clock: Callable[[], float] = time.time,
        max_rows: int = MAX_ROWS,
    ) -> None:
        self._port = port
        self._clock = clock
        self._batch = Batch(edge, max_rows)
        self._subjects: dict[str, str | None] = {}
        self._completed = 0
        self.lines = 0
        """Lines read."""

    def feed(self, line: str) -> Row | None:
        """Take one observation-log line; returns its row (None when it is not one)."""
        self.lines += 1
        row = edge_row(line, self._clock(), self._subjects)
        if row is not None:
            self._completed += 1
            self._batch.add(row)
        return row

    async def drain(self) -> bytes:
        """The rows since the last drain and a sample of the edge's connections, as one
        stream entry (:func:`decode_entry` reads it)."""
        now = self._clock()
        holders = tcp_connections(await asyncio.to_thread(read_tcp_tables), self._port)
        conn = connection_sample(now, holders, self._completed, "edge")
        self._completed = 0
        return self._batch.drain(now, conn)


async def ship_entry(redis: Redis, data: bytes) -> None:
    """Append one observation batch to :data:`STREAM` (capped)."""
    await redis.xadd(STREAM, {"d": data}, maxlen=STREAM_MAXLEN, approximate=True)


def feed_watch(watch: Watch, decoded: Decoded) -> int:
    """Hand one decoded batch to ``watch``; returns the observations it held."""
    observations, conn = decoded
    for obs, count in observations:
        watch.observe(obs, count)
    if conn is not None:
        watch.observe_connections(conn)
    return len(observations)


# -- adapters: the node side ----------------------------------------------------------------


async def consume(redis: Redis, watch: Watch, *, block_ms: int = 1000) -> None:
    """Feed ``watch`` from :data:`STREAM` (entries added from now on) until cancelled."""
    last = "$"
    while True:
        try:
            answer: Any = await redis.xread({STREAM: last}, count=100, block=block_ms)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("cannot read edge observations: %s", exc)
            await asyncio.sleep(1.0)
            continue
        for _, entries in answer or ():
            for entry_id, fields in entries:
                last = entry_id if isinstance(entry_id, str) else entry_id.decode()
                data = fields.get("d") if "d" in fields else fields.get(b"d")
                if data is None:
                    continue
                try:
                    feed_watch(watch, decode_entry(data))
                except (ValueError, TypeError, KeyError) as exc:
                    logger.warning("skipping an unreadable observation batch: %s", exc)


class RequestCounter:
    """Counts completed and in-flight HTTP requests of the node (pure ASGI, outermost)."""

    completed = 0
    inflight = 0
    port: int | None = None

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cls = RequestCounter
        server = scope.get("server")
        if cls.port is None and server and server[1] is not None:
            cls.port = int(server[1])
        cls.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            cls.inflight -= 1
            cls.completed += 1


async def sample_origin(
    watch: Watch, *, clock: Callable[[], float] = time.time, interval: float = 1.0
) -> None:
    """Every ``interval``: the node's connection sample (sockets of its listening port, or
    in-flight requests when the port is not known yet) and its load sample."""
    cpu0, done0, t0 = time.process_time(), RequestCounter.completed, time.monotonic()
    while True:
        await asyncio.sleep(interval)
        try:
            cpu1, done1, t1 = time.process_time(), RequestCounter.completed, time.monotonic()
            span = max(1e-6, t1 - t0)
            now = clock()
            port = RequestCounter.port
            holders: Counter[str] = Counter()
            if port is not None and os.path.exists("/proc/net/tcp"):
                holders = tcp_connections(await asyncio.to_thread(read_tcp_tables), port)
            if not holders and RequestCounter.inflight:
                holders = Counter({"(unknown)": RequestCounter.inflight})
            watch.observe_connections(connection_sample(now, holders, done1 - done0, "origin"))
            watch.observe_origin(OriginSample(now, (done1 - done0) / span, (cpu1 - cpu0) / span))
            cpu0, done0, t0 = cpu1, done1, t1
        except asyncio.CancelledError:
            raise
        except Exception:  # the watch must never take the node down
            logger.exception("origin sample failed")
