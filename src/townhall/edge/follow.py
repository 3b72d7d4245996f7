"""Following a log file that its writer appends to and that this reader rotates.

nginx writes its access log in 64 KiB blocks (at least once a second); the edge's one log
reader (:mod:`townhall.edge.logship`) wants those bytes as a stream. :class:`LogFollower`
reads new bytes every ``poll`` seconds into an :class:`asyncio.StreamReader`. When the file
passes ``rotate_at`` bytes it renames it, asks the writer to reopen its logs (nginx: SIGUSR1
to the master, which flushes the workers' buffers into the old file first) and reads the old
file to its end before switching to the new one, so nothing is read twice and, short of a
writer that takes longer than ``settle`` seconds to reopen, nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

CHUNK = 1 << 16


class LogFollower:
    """Feeds the bytes appended to ``path`` into a stream; rotates the file when it grows."""

    def __init__(
        self,
        path: Path,
        reopen: Callable[[], None],
        *,
        rotate_at: int = 64 << 20,
        poll: float = 0.2,
        settle: float = 2.0,
    ) -> None:
        self.path = path
        self._reopen = reopen
        self._rotate_at = rotate_at
        self._poll = poll
        self._settle = settle
        self.rotations = 0
        """Rotations done so far."""

    async def run(self, sink: asyncio.StreamReader, stop: asyncio.Event) -> None:
        """Copy appended bytes into ``sink`` until ``stop`` is set (then to the end of the file,
        and EOF)."""
        fh = await self._open(stop)
        old = self.path.with_name(self.path.name + ".old")
        rotated_at: float | None = None
        try:
            while fh is not None:
                await self._drain(fh, sink)
                if stop.is_set():
                    break
                if rotated_at is None and os.fstat(fh.fileno()).st_size >= self._rotate_at:
                    os.replace(self.path, old)
                    self._reopen()
                    rotated_at = time.monotonic()
                elif rotated_at is not None and time.monotonic() - rotated_at >= self._settle:
                    if self.path.exists():
                        await self._drain(fh, sink)
                        fh.close()
                        with contextlib.suppress(OSError):
                            old.unlink()
                        fh = self.path.open("rb")
                        self.rotations += 1
                        rotated_at = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll)
        finally:
            if fh is not None:
                await self._drain(fh, sink)
                fh.close()
            sink.feed_eof()

    async def _open(self, stop: asyncio.Event) -> BinaryIO | None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                return self.path.open("rb")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll)
        return None

    @staticmethod
    async def _drain(fh: BinaryIO, sink: asyncio.StreamReader) -> None:
        """Feed what the file holds, one block at a time, letting the reader keep up."""
        while chunk := fh.read(CHUNK):
            sink.feed_data(chunk)
            await asyncio.sleep(0)
