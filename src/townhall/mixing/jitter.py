"""Per-speaker jitter buffer keyed by the sender's media clock (RTP timestamp, 48 kHz).

Positions are *unwrapped* sender timestamps (Python ints, so the 2**32 wrap disappears).
Samples live in a power-of-two ring; next to each slot we store the ring "lap" that wrote it,
so a slot is valid for position ``p`` iff ``lap[p & mask] == p & ~mask``. Nothing needs
clearing after playout, stale data can never be played, and recently played audio stays
available for backward splices.

The playout cursor is the sender position of the next sample to mix; it advances exactly
``FRAME_SAMPLES`` per tick. Every packet's *slack* (how long before its playout it arrived,
measured against the wall clock, so not quantised to frames) is tracked; its minimum over
one-second windows is the buffer's effective depth. Jitter only lowers it; a fast sender
clock makes it grow, a slow one makes it shrink. Once per window:

* minimum below ``jitter/2``: a 5 ms cross-faded backward splice (repeats 5 ms);
* above ``jitter + 20 ms``: a 5 ms cross-faded forward splice (drops 5 ms);

a packet that would make the buffer deeper than ``max_buffer`` trims it back to the target
immediately, and a run of packets that all miss their slots (the network path got slower)
steps playout back so the latest one plays a jitter delay after its arrival.
0.1 % clock error is 48 samples/s: one 5 ms splice every ~5 s absorbs it.
"""

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from townhall.mixing.constants import FRAME_SAMPLES, SAMPLE_RATE
from townhall.mixing.stats import MixerStats

F32 = npt.NDArray[np.float32]
I16 = npt.NDArray[np.int16]

_NO_LAP = np.iinfo(np.int64).min
_WRAP = 1 << 32
_HALF_WRAP = 1 << 31
WINDOW_TICKS = 50
"""Depth is judged over windows of this many ticks (1 s)."""
DRIFT_STEP = 240
"""Samples added or removed by one drift-compensation splice (5 ms)."""
CROSSFADE = 480
"""Length of the cross-fade used by every splice (10 ms)."""
IDLE_REANCHOR_S = 0.5
"""A speaker silent (no packets) this long is re-anchored by its next packet."""
LATE_RUN_RESYNC = 4
"""This many consecutive packets missing their slots step playout back (underrun resync)."""
FAR_SAMPLES = SAMPLE_RATE
"""A packet more than this far (1 s) from the cursor is a timestamp jump, not jitter."""

_FADE_IN = (np.arange(1, CROSSFADE + 1, dtype=np.float32) / (CROSSFADE + 1)).astype(np.float32)


def unwrap(timestamp: int, reference: int) -> int:
    """Unwrap a 32-bit ``timestamp`` to the integer closest to ``reference``."""
    delta = ((timestamp - reference) + _HALF_WRAP) % _WRAP - _HALF_WRAP
    return reference + delta


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


@dataclass(frozen=True, slots=True)
class SpeakerBufferState:
    """Snapshot of one speaker's jitter buffer (for tests, metrics and debugging)."""

    anchored: bool
    """Whether the speaker's media clock is anchored to the tick clock."""
    cursor: int
    """Unwrapped sender timestamp of the next sample to be mixed."""
    depth_samples: int
    """Newest buffered sample (end) minus the cursor; negative if the buffer ran dry."""


class JitterBuffer:
    """One speaker's buffer. Not thread-safe; driven by :class:`Mixer`."""

    def __init__(self, *, jitter_samples: int, max_buffer_samples: int, stats: MixerStats) -> None:
        self._jitter = jitter_samples
        self._max = max_buffer_samples
        self._stats = stats
        cap = _next_pow2(max(2 * max_buffer_samples + 4 * FRAME_SAMPLES, 8192))
        self._cap = cap
        self._mask = cap - 1
        self._ring = np.zeros(cap, dtype=np.float32)
        self._lap = np.full(cap, _NO_LAP, dtype=np.int64)
        self._tmp = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._anchored = False
        self._cursor = 0
        self._high = 0
        self._live_from = 0
        self._ref = 0
        self._last_push: float | None = None
        self._splice_from: int | None = None
        self._far_ref: int | None = None
        self._late_run = 0
        self._win_min = math.inf
        self._win_ticks = 0
        self._win_samples = 0

    # -- state -------------------------------------------------------------------------
    def state(self) -> SpeakerBufferState:
        """Current anchoring, cursor and depth."""
        return SpeakerBufferState(self._anchored, self._cursor, self._high - self._cursor)

    # -- input -------------------------------------------------------------------------
    def push(self, pcm: F32, timestamp: int, now: float, lead_samples: float) -> None:
        """Buffer ``pcm`` (float32, int16 units) whose first sample has sender ``timestamp``.

        ``lead_samples`` is how far wall-clock ``now`` is past the start of the next tick to
        be mixed, in samples (usually in (-960, 0]); used only when (re-)anchoring.
        """
        n = int(pcm.shape[0])
        if n == 0:
            return
        if n > self._cap // 2:  # absurdly long chunk: keep its tail only
            cut = n - self._cap // 2
            pcm = pcm[cut:]
            timestamp += cut
            n -= cut
        timestamp &= _WRAP - 1
        if not self._anchored:
            self._anchor(timestamp, now, lead_samples)
            self._write(pcm, timestamp, now)
            return
        pos = unwrap(timestamp, self._ref)
        idle = self._last_push is None or now - self._last_push >= IDLE_REANCHOR_S
        rel = pos - self._cursor
        if idle:
            self._anchor(pos, now, lead_samples)
            self._write(pcm, pos, now)
            return
        if rel > FAR_SAMPLES or rel + n < -FAR_SAMPLES:
            # a clock jump: believe it once two packets agree, otherwise treat as garbage
            if self._far_ref is not None and abs(pos - self._far_ref) <= FAR_SAMPLES:
                self._anchor(pos, now, lead_samples)
                self._write(pcm, pos, now)
            else:
                self._far_ref = pos
                self._stats.frames_dropped += 1
            return
        slack = rel - lead_samples  # how long before its playout this packet arrived
        if slack < self._win_min:
            self._win_min = slack
        if rel + n <= 0:
            self._stats.frames_late += 1
            self._late_run += 1
            if self._late_run >= LATE_RUN_RESYNC:
                # the path got slower: replay from this packet, a jitter delay from now
                self._splice_to(pos - self._delay(lead_samples))
                self._stats.underrun_resyncs += 1
                self._write(pcm, pos, now)
            return
        if rel < 0:  # partly late: keep the part that can still be played
            pcm = pcm[-rel:]
            pos -= rel
            n += rel
            rel = 0
        if rel + n > self._max:
            self._splice_to(pos - self._jitter)
            self._stats.overflow_trims += 1
        self._write(pcm, pos, now)

    def _delay(self, lead_samples: float) -> int:
        delay = int(round(self._jitter + max(lead_samples, -float(FRAME_SAMPLES))))
        return min(max(delay, 0), self._max - FRAME_SAMPLES)

    def _anchor(self, pos: int, now: float, lead_samples: float) -> None:
        self._anchored = True
        self._cursor = pos - self._delay(lead_samples)
        self._high = self._cursor
        self._live_from = pos
        self._ref = pos
        self._splice_from = None
        self._far_ref = None
        self._lap.fill(_NO_LAP)
        self._reset_window()
        self._stats.reanchors += 1

    def _write(self, pcm: F32, pos: int, now: float) -> None:
        n = int(pcm.shape[0])
        slot = pos & self._mask
        lap = pos - slot
        first = min(n, self._cap - slot)
        dup = (
            self._lap[slot] == lap
            and bool((self._lap[slot : slot + first] == lap).all())
            and (first == n or bool((self._lap[: n - first] == lap + self._cap).all()))
        )
        self._last_push = now
        self._far_ref = None
        self._late_run = 0
        if dup:
            self._stats.frames_duplicate += 1
            return
        self._ring[slot : slot + first] = pcm[:first]
        self._lap[slot : slot + first] = lap
        if first < n:
            self._ring[: n - first] = pcm[first:]
            self._lap[: n - first] = lap + self._cap
        self._high = max(self._high, pos + n)
        self._ref = pos
        self._win_samples += n
        self._stats.frames_pushed += 1

    # -- output ------------------------------------------------------------------------
    def read(self, out: F32) -> None:
        """Fill ``out`` (FRAME_SAMPLES) with the next frame and advance the cursor."""
        if not self._anchored:
            out.fill(0.0)
            return
        depth = self._high - self._cursor  # for concealment accounting only
        if self._splice_from is not None:
            self._read_at(self._splice_from, self._tmp)
            missing = self._read_at(self._cursor, out)
            head = out[:CROSSFADE]
            head -= self._tmp[:CROSSFADE]
            head *= _FADE_IN
            head += self._tmp[:CROSSFADE]
            self._splice_from = None
        else:
            missing = self._read_at(self._cursor, out)
        if missing and depth > 0 and self._cursor >= self._live_from:
            self._stats.frames_concealed += 1
        self._cursor += FRAME_SAMPLES
        self._judge_window()

    def _read_at(self, pos: int, out: F32) -> int:
        """Copy FRAME_SAMPLES from ``pos`` into ``out`` (silence where absent); count misses."""
        slot = pos & self._mask
        lap = pos - slot
        first = min(FRAME_SAMPLES, self._cap - slot)
        ok = self._lap[slot : slot + first] == lap
        np.multiply(self._ring[slot : slot + first], ok, out=out[:first])
        good = int(np.count_nonzero(ok))
        if first < FRAME_SAMPLES:
            ok2 = self._lap[: FRAME_SAMPLES - first] == lap + self._cap
            np.multiply(self._ring[: FRAME_SAMPLES - first], ok2, out=out[first:])
            good += int(np.count_nonzero(ok2))
        return FRAME_SAMPLES - good

    def skip(self, frames: int) -> None:
        """Advance playout by ``frames`` ticks without mixing (the caller stalled)."""
        if self._anchored and frames > 0:
            self._splice_to(self._cursor + frames * FRAME_SAMPLES)

    # -- drift control -----------------------------------------------------------------
    def _splice_to(self, new_cursor: int) -> None:
        if self._splice_from is None:
            self._splice_from = self._cursor
        self._cursor = new_cursor
        self._reset_window()  # judge the new depth afresh

    def _reset_window(self) -> None:
        self._win_min = math.inf
        self._win_ticks = 0
        self._win_samples = 0

    def _judge_window(self) -> None:
        self._win_ticks += 1
        if self._win_ticks < WINDOW_TICKS:
            return
        streaming = self._win_samples >= WINDOW_TICKS * FRAME_SAMPLES // 2
        low = self._win_min
        self._reset_window()
        if not streaming:
            return
        target = self._jitter
        if low < target // 2:  # slow sender clock (or more jitter): add 5 ms
            self._splice_to(self._cursor - DRIFT_STEP)
            self._stats.drift_stretches += 1
        elif low > target + FRAME_SAMPLES:  # fast sender clock: drop 5 ms
            self._splice_to(self._cursor + DRIFT_STEP)
            self._stats.drift_trims += 1
