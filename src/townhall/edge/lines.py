"""Consuming a log stream line by line while flushing batches on a timer: the loop of the
edge's log reader (listener counts and observations for the watch)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..tasks import stop_task

CHUNK = 1 << 16
"""Bytes read per wake-up: a busy edge prints thousands of lines a second, read in blocks."""


async def consume_lines(
    stream: asyncio.StreamReader,
    feed: Callable[[str], None],
    flush: Callable[[], Awaitable[None]],
    interval: float,
) -> None:
    """Feed every line of ``stream`` to ``feed`` until EOF, calling ``flush`` every
    ``interval`` seconds (and once more at the end)."""

    async def flush_forever() -> None:
        while True:
            await asyncio.sleep(interval)
            await flush()

    flusher = asyncio.create_task(flush_forever())
    tail = b""
    try:
        while chunk := await stream.read(CHUNK):
            *lines, tail = (tail + chunk).split(b"\n")
            for line in lines:
                feed(line.decode("utf-8", "replace"))
        if tail:
            feed(tail.decode("utf-8", "replace"))
    finally:
        await stop_task(flusher)
        await flush()
