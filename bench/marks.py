"""Timing marks: a source track that sends coded tone bursts and logs when each left,
and a streaming detector that finds them again in received audio.

Mark ``i`` is a 100 ms burst at ``600 + 200 * (i % 8)`` Hz starting on a 20 ms frame
boundary every ``period`` seconds, silence in between. The frequency code tells marks
apart as long as the latency stays under ``8 * period``.
"""

from __future__ import annotations

import fractions
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from townhall.stage.pacing import FramePacer

RATE = 48_000
FRAME = 960
CODES = 8
BURST_S = 0.100
AMPLITUDE = 0.5
ONSET_RMS = 0.1
"""Onset threshold: RMS of a 1 ms block, as a fraction of full scale."""
HOLDOFF_S = 0.6
"""No new onset within this long after one (codec tails, limiter)."""

F32 = npt.NDArray[np.float32]


def code_freq(code: int) -> float:
    return 600.0 + 200.0 * code


@dataclass(frozen=True)
class SentMark:
    """A mark as it left the source track."""

    index: int
    """Running mark number (code = index % 8)."""
    wall: float
    """``time.time()`` when the frame holding the burst's first sample was handed on."""


class MarkTrack(MediaStreamTrack):
    """Silence with a coded burst every ``period`` s (first after ``lead`` s), real-time
    paced 20 ms mono s16 frames. ``sent`` logs each burst's send time."""

    kind = "audio"

    def __init__(self, period: float = 1.0, lead: float = 1.0) -> None:
        super().__init__()
        self.period_frames = round(period * RATE / FRAME)
        self.lead_frames = round(lead * RATE / FRAME)
        self.sent: list[SentMark] = []
        self._pacer = FramePacer(FRAME, RATE)
        self._burst_frames = round(BURST_S * RATE / FRAME)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next_pts()
        k = pts // FRAME - self.lead_frames
        samples = np.zeros(FRAME, dtype=np.int16)
        if k >= 0 and k % self.period_frames < self._burst_frames:
            index, offset = divmod(k, self.period_frames)
            samples = _burst_frame(index % CODES, offset)
            if offset == 0:
                self.sent.append(SentMark(index, time.time()))
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


def _burst_frame(code: int, offset_frames: int) -> npt.NDArray[np.int16]:
    n = np.arange(offset_frames * FRAME, (offset_frames + 1) * FRAME, dtype=np.float64)
    wave = np.sin(2 * math.pi * code_freq(code) * n / RATE) * AMPLITUDE
    fade = np.clip(n / (0.002 * RATE), 0.0, 1.0)  # 2 ms fade-in: a clean onset
    result: npt.NDArray[np.int16] = np.round(wave * fade * 32767).astype(np.int16)
    return result


@dataclass(frozen=True)
class FoundMark:
    """A mark found in received audio."""

    code: int
    """Frequency code (``index % 8``)."""
    sample: int
    """Position of the onset in the receiver's sample count."""
    wall: float
    """Receiver wall time of the chunk that held the onset (when it became available)."""


class MarkDetector:
    """Streaming onset + code detector over float mono chunks in [-1, 1].

    ``feed(pcm, wall)`` appends a chunk that became available at ``wall``; found marks
    accumulate in ``found`` (a mark is reported once 50 ms after its onset are in).
    """

    def __init__(self) -> None:
        self.found: list[FoundMark] = []
        self._buf: F32 = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # sample index of _buf[0]
        self._scan = 0  # next sample index to scan for an onset
        self._holdoff_until = 0
        self._chunks: list[tuple[int, float]] = []  # (first sample, wall) of each chunk
        self._pending: tuple[int, float] | None = None  # onset awaiting classification

    @property
    def samples(self) -> int:
        return self._buf_start + self._buf.size

    def feed(self, pcm: F32, wall: float) -> None:
        self._chunks.append((self.samples, wall))
        self._buf = np.concatenate([self._buf, pcm.astype(np.float32, copy=False)])
        self._step()
        keep_from = min(self._scan, self._pending[0] if self._pending else self._scan) - RATE
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :]
            self._buf_start = keep_from
            self._chunks = [c for c in self._chunks if c[0] >= keep_from - 10 * RATE]

    def _step(self) -> None:
        block = 48
        while True:
            if self._pending is not None:
                onset, wall = self._pending
                need = onset + int(0.05 * RATE)
                if self.samples < need:
                    return
                code = self._classify(onset)
                if code is not None:
                    self.found.append(FoundMark(code, onset, wall))
                self._pending = None
            if self._scan + block > self.samples:
                return
            if self._scan < self._holdoff_until:
                self._scan = min(self._holdoff_until, self.samples)
                continue
            i = self._scan - self._buf_start
            seg = self._buf[i : i + block]
            if float(np.sqrt(np.mean(seg * seg))) >= ONSET_RMS:
                onset = self._scan + _first_loud(seg)
                self._pending = (onset, self._wall_of(onset))
                self._holdoff_until = onset + int(HOLDOFF_S * RATE)
            self._scan += block

    def _wall_of(self, sample: int) -> float:
        wall = self._chunks[0][1]
        for first, w in self._chunks:
            if first > sample:
                break
            wall = w
        return wall

    def _classify(self, onset: int) -> int | None:
        i = onset - self._buf_start + int(0.01 * RATE)
        seg = self._buf[i : i + int(0.04 * RATE)]
        spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
        peak = float(np.argmax(spectrum)) * RATE / seg.size
        code = round((peak - 600.0) / 200.0)
        if 0 <= code < CODES and abs(code_freq(code) - peak) < 80:
            return code
        return None


def _first_loud(seg: F32) -> int:
    loud = np.nonzero(np.abs(seg) >= ONSET_RMS)[0]
    return int(loud[0]) if loud.size else 0


def match_marks(
    sent: Sequence[SentMark], found: Sequence[FoundMark]
) -> list[tuple[SentMark, FoundMark]]:
    """Pair each found mark with the latest sent mark of its code sent before it arrived.

    Unambiguous while latency < 8 periods; each sent mark is used at most once."""
    pairs: list[tuple[SentMark, FoundMark]] = []
    used: set[int] = set()
    for mark in found:
        candidates = [s for s in sent if s.index % CODES == mark.code and s.wall <= mark.wall]
        if not candidates:
            continue
        best = max(candidates, key=lambda s: s.wall)
        if best.index in used:
            continue
        used.add(best.index)
        pairs.append((best, mark))
    return pairs
