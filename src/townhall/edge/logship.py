"""The edge's one log reader: a single ``varnishncsa`` (or nginx's access log) gives a line
per ``/hls/`` request (:data:`townhall.watch.ingest.OBS_FORMAT`); each line is parsed once and
feeds both the listener counts (distinct tickets that fetched media) and the watch's
observations (:class:`townhall.watch.ingest.EdgeObserver`). Every second both are shipped by a
sink: :class:`RedisSink` (a cluster: HyperLogLogs and the observation stream every node reads)
or :class:`OriginSink` (an origin without Redis: ``POST /ops/edge-report`` with the operator
key; the origin counts the listeners and feeds its watch)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import httpx
import orjson
from redis.asyncio import Redis

from ..watch.ingest import OBS_FORMAT, OBS_QUERY, EdgeObserver, Row, ship_entry
from ..watch.observations import MISS, SERVED
from .lines import consume_lines
from .seen import HllWrite, MediaFetched, SeenBatch

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
REPORT_PATH = "/ops/edge-report"
"""The origin's route for an edge's report (:class:`OriginSink`)."""
MAX_REPORT_LISTENERS = 50_000
"""Listener ids per report; a larger second is sent as several reports."""
COUNTED_PREFIXES = ("part", "seg", "std")
"""Media names whose fetch means "listening": parts and segments (``*.m4s``), LL-HLS and
standard."""


def varnishncsa_command(workdir: str, binary: str = "varnishncsa") -> list[str]:
    """The varnishncsa command that prints one line per media request (and probe) of the edge
    in ``workdir`` (line-buffered through ``stdbuf`` so lines arrive as they happen)."""
    return ["stdbuf", "-oL", binary, "-n", workdir, "-F", OBS_FORMAT, "-q", OBS_QUERY]


def logged_name(line: str) -> str:
    """The media name a log line carries (``th_nm``; empty when the request was refused)."""
    pieces = line.rsplit("|", 2)
    return pieces[1] if len(pieces) == 3 else ""


def media_fetch(row: Row, name: str) -> MediaFetched | None:
    """The listener-count view of an observation row: a part or segment served to a ticket
    holder (the edge verified the ticket before logging it), or None. Playlists and the init
    segment do not count as listening."""
    at, _source, outcome, _kind, subject, space = row
    if outcome not in (SERVED, MISS) or not subject or not space:
        return None
    if not name.endswith(".m4s") or not name.startswith(COUNTED_PREFIXES):
        return None
    return MediaFetched(space=space, listener=subject, at=at)


async def write_batch(redis: Redis, writes: Sequence[HllWrite]) -> None:
    """PFADD (and EXPIRE) every write in one pipeline round trip."""
    if not writes:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for w in writes:
            pipe.pfadd(w.key, *w.members)
            if w.ttl is not None:
                pipe.expire(w.key, w.ttl)
        await pipe.execute()


class Sink(Protocol):
    """Where an edge's second of listeners and observations goes."""

    async def ship(self, listeners: SeenBatch, observations: bytes) -> None:
        """Ship (and drain) ``listeners`` and one observation batch; never raises for an
        unreachable destination (the edge keeps serving)."""
        ...

    async def close(self) -> None: ...


class RedisSink:
    """A cluster's Redis: PFADD into the listener HyperLogLogs, XADD to the observation
    stream."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def ship(self, listeners: SeenBatch, observations: bytes) -> None:
        writes = listeners.drain()
        try:
            await write_batch(self._redis, writes)
        except Exception as exc:  # Redis down: counts are best effort, the edge keeps serving
            logger.warning("could not ship %d listener writes: %s", len(writes), exc)
        try:
            await ship_entry(self._redis, observations)
        except Exception as exc:
            logger.warning("could not ship an observation batch: %s", exc)

    async def close(self) -> None:
        await self._redis.aclose()


def report_bodies(listeners: dict[str, list[str]], observations: bytes) -> list[bytes]:
    """The JSON bodies of one second's report: the observations in the first, the listener
    ids split so that no body holds more than :data:`MAX_REPORT_LISTENERS`."""
    chunks: list[dict[str, list[str]]] = [{}]
    room = MAX_REPORT_LISTENERS
    for space, ids in listeners.items():
        start = 0
        while start < len(ids):
            if room == 0:
                chunks.append({})
                room = MAX_REPORT_LISTENERS
            taken = ids[start : start + room]
            chunks[-1].setdefault(space, []).extend(taken)
            start += len(taken)
            room -= len(taken)
    first = b'{"listeners":' + orjson.dumps(chunks[0]) + b',"observations":' + observations
    bodies = [first + b"}"]
    bodies += [orjson.dumps({"listeners": chunk}) for chunk in chunks[1:]]
    return bodies


class OriginSink:
    """An origin without Redis: ``POST /ops/edge-report`` as an operator (``--ops-key``)."""

    def __init__(self, api: str, ops_key: str) -> None:
        self._url = api.rstrip("/") + REPORT_PATH
        self._client = httpx.AsyncClient(
            timeout=5, headers={"Authorization": f"Bearer {ops_key}"}, trust_env=False
        )
        self._failing: str | None = None

    async def ship(self, listeners: SeenBatch, observations: bytes) -> None:
        for body in report_bodies(listeners.drain_listeners(), observations):
            try:
                r = await self._client.post(
                    self._url, content=body, headers={"Content-Type": "application/json"}
                )
                problem = None if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                if self._failing is not None:
                    logger.info("the origin takes the edge's reports again")
                self._failing = None
            elif problem != self._failing:  # say each new kind of failure once
                logger.warning("could not report listeners to %s: %s", self._url, problem)
                self._failing = problem

    async def close(self) -> None:
        await self._client.aclose()


class LogShipper:
    """Reads the edge's log lines; batches distinct listeners and hands them and the watch's
    observations to its sink every second."""

    def __init__(
        self,
        sink: Sink,
        observer: EdgeObserver,
        *,
        interval: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        self._observer = observer
        self._interval = interval
        self._clock = clock
        self._batch = SeenBatch()
        self.lines = 0
        """Lines read so far."""
        self.counted = 0
        """Lines that were counted media fetches."""

    def feed(self, line: str) -> None:
        self.lines += 1
        row = self._observer.feed(line)
        fetch = None if row is None else media_fetch(row, logged_name(line))
        if fetch is not None:
            self.counted += 1
            self._batch.add(fetch)

    async def flush(self) -> None:
        await self._sink.ship(self._batch, await self._observer.drain())

    async def run(self, stream: asyncio.StreamReader) -> None:
        """Consume ``stream`` until EOF, flushing every ``interval`` and once at the end."""
        await consume_lines(stream, self.feed, self.flush, self._interval)
