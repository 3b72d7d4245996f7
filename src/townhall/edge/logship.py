"""The edge's one log reader: a single ``varnishncsa`` prints a line per ``/hls/`` request
(:data:`townhall.watch.ingest.OBS_FORMAT`); each line is parsed once and feeds both the
listener counts (distinct tickets that fetched media → Redis HyperLogLogs, every second) and
the watch's observations (:class:`townhall.watch.ingest.EdgeObserver`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from ..watch.ingest import OBS_FORMAT, OBS_QUERY, EdgeObserver, Row
from ..watch.observations import MISS, SERVED
from .lines import consume_lines
from .seen import HllWrite, MediaFetched, SeenBatch

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
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


class LogShipper:
    """Reads the edge's log lines; batches distinct listeners and flushes them to Redis every
    second; hands every line to the watch's observer."""

    def __init__(
        self,
        redis: Redis,
        observer: EdgeObserver,
        *,
        interval: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
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
        writes = self._batch.drain()
        try:
            await write_batch(self._redis, writes)
        except Exception as exc:  # Redis down: counts are best effort, the edge keeps serving
            logger.warning("could not ship %d listener writes: %s", len(writes), exc)
        await self._observer.flush()

    async def run(self, stream: asyncio.StreamReader) -> None:
        """Consume ``stream`` until EOF, flushing every ``interval`` and once at the end."""
        await consume_lines(stream, self.feed, self.flush, self._interval)
