"""Ship distinct listeners from an edge's access log (varnishncsa) into Redis, every second."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from .lines import consume_lines
from .seen import LOG_FORMAT, LOG_QUERY, HllWrite, SeenBatch, parse_line

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


def varnishncsa_command(workdir: str, binary: str = "varnishncsa") -> list[str]:
    """The varnishncsa command that prints one line per media fetch of the edge in
    ``workdir`` (line-buffered through ``stdbuf`` so lines arrive as they happen)."""
    return ["stdbuf", "-oL", binary, "-n", workdir, "-F", LOG_FORMAT, "-q", LOG_QUERY]


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
    """Reads log lines, batches distinct listeners, flushes them to Redis every second."""

    def __init__(
        self,
        redis: Redis,
        *,
        interval: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._interval = interval
        self._clock = clock
        self._batch = SeenBatch()
        self.lines = 0
        """Lines read so far."""
        self.counted = 0
        """Lines that were counted media fetches."""

    def feed(self, line: str) -> None:
        self.lines += 1
        fetch = parse_line(line, self._clock())
        if fetch is not None:
            self.counted += 1
            self._batch.add(fetch)

    async def flush(self) -> None:
        writes = self._batch.drain()
        try:
            await write_batch(self._redis, writes)
        except Exception as exc:  # Redis down: counts are best effort, the edge keeps serving
            logger.warning("could not ship %d listener writes: %s", len(writes), exc)

    async def run(self, stream: asyncio.StreamReader) -> None:
        """Consume ``stream`` until EOF, flushing every ``interval`` and once at the end."""
        await consume_lines(stream, self.feed, self.flush, self._interval)
