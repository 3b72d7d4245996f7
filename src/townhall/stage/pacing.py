"""Real-time pacing for outbound audio tracks, as aiortc's ``AudioStreamTrack`` does it.

aiortc's sender calls ``track.recv()`` in a loop and sends whatever it returns at
once; the track itself must wait until its next frame is due. The schedule is
anchored at the first frame (``start + pts / rate``), so sleeping late never adds up
to drift.
"""

from __future__ import annotations

import asyncio

__all__ = ["FramePacer"]


class FramePacer:
    """Hands out consecutive pts values, each no earlier than its wall-clock time."""

    def __init__(self, samples_per_frame: int, sample_rate: int) -> None:
        self._samples = samples_per_frame
        self._rate = sample_rate
        self._start: float | None = None
        self._pts = 0

    async def next_pts(self) -> int:
        """Wait until the next frame is due and return its pts (in samples)."""
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
            return 0
        self._pts += self._samples
        delay = self._start + self._pts / self._rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return self._pts
