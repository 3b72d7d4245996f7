"""Consuming a log stream line by line while flushing batches on a timer: the common loop of
the edge's shippers (listener counts, observations for the watch)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


async def consume_lines(
    stream: asyncio.StreamReader,
    feed: Callable[[str], None],
    flush: Callable[[], Awaitable[None]],
    interval: float,
    *,
    flush_at_end: bool = True,
) -> None:
    """Feed every line of ``stream`` to ``feed`` until EOF, calling ``flush`` every
    ``interval`` seconds (and once more at the end)."""

    async def flush_forever() -> None:
        while True:
            await asyncio.sleep(interval)
            await flush()

    flusher = asyncio.create_task(flush_forever())
    try:
        while line := await stream.readline():
            feed(line.decode("utf-8", "replace"))
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        if flush_at_end:
            await flush()
