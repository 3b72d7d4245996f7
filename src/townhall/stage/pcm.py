"""PCM helpers for the stage (pure numpy, no I/O, no clock).

The stage speaks one format to the mixer: int16 mono, 48 kHz, 960 samples (20 ms)
per call, stamped with the RTP timestamp in samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "FrameChunker",
    "Pcm",
    "downmix_to_mono",
    "interleaved_to_channels",
]

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz

Pcm = npt.NDArray[np.int16]


def interleaved_to_channels(samples: npt.NDArray[Any], channels: int) -> npt.NDArray[Any]:
    """Packed audio (``AudioFrame.to_ndarray()``: ``(1, n * channels)``) to ``(n, channels)``."""
    return samples.reshape(-1, channels)


def downmix_to_mono(samples: npt.NDArray[Any], channels: int) -> Pcm:
    """Average the channels of packed s16 audio into int16 mono (no clipping possible)."""
    if channels == 1:
        return samples.reshape(-1).astype(np.int16, copy=False)
    frames = interleaved_to_channels(samples, channels).astype(np.int32)
    mono: Pcm = (frames.sum(axis=1) // channels).astype(np.int16)
    return mono


@dataclass
class FrameChunker:
    """Re-cuts decoded audio into exact 960-sample frames with their timestamps.

    aiortc hands over one frame per Opus packet: 960 samples for the usual 20 ms
    packets, but a sender may use 10, 40 or 60 ms. A timestamp that does not follow
    on from the previous input (a lost packet, a new stream) drops the incomplete
    remainder and starts again at the new timestamp.
    """

    frame_samples: int = FRAME_SAMPLES
    _pending: Pcm = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    _pending_pts: int = 0
    _next_pts: int | None = None

    def push(self, mono: Pcm, pts: int) -> list[tuple[Pcm, int]]:
        """Add ``mono`` starting at ``pts``; return the complete frames now available."""
        if self._next_pts is not None and pts != self._next_pts:
            self._pending = np.zeros(0, dtype=np.int16)  # discontinuity: start again
        if self._pending.size == 0:
            self._pending_pts = pts
        self._next_pts = pts + mono.size
        if self._pending.size == 0 and mono.size == self.frame_samples:
            return [(mono, pts)]  # the common case: no copy
        self._pending = np.concatenate([self._pending, mono])
        out = []
        while self._pending.size >= self.frame_samples:
            out.append((self._pending[: self.frame_samples].copy(), self._pending_pts))
            self._pending = self._pending[self.frame_samples :]
            self._pending_pts += self.frame_samples
        return out
