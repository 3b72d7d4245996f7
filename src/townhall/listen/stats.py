"""Pure listening statistics: latency percentiles and a simulated player buffer (no I/O, no
clock: every call takes the wall time it refers to).

Definitions (all times are wall-clock seconds since the epoch; the server's
PROGRAM-DATE-TIME is the wall time at which the first sample of a segment was captured):

- capture start of a part = PDT of its segment + offset of the part within the segment;
- **arrival latency** of a part = time its last byte was received - (capture start + part
  duration): the age of the part's newest sample when the part arrived. No player can render
  the part earlier, so it is the lower bound of what a listener hears and the upper bound of the
  "glass-to-glass" figure the origin and network are responsible for;
- **playout latency** of a part = wall time at which its first sample is played by
  :class:`PlayoutClock` - its capture start: the mouth-to-ear delay of a player that starts once
  it holds ``start_buffer`` seconds (PART-HOLD-BACK), plays in real time and re-buffers after an
  underrun. Every sample of a part has the same playout latency.
- a **stall** is an underrun: the play position reached the end of the received media while the
  stream had not ended; its length runs until playback resumes (or until the listener stopped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_EPS = 1e-9


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (as
    numpy's default); None for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError("q must be within 0..100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class LatencySummary:
    """Distribution of a latency series, seconds (None when there were no samples)."""

    count: int
    """Number of samples."""
    p50: float | None
    """Median."""
    p95: float | None
    """95th percentile."""
    max: float | None
    """Largest value."""


def summarize(values: Sequence[float]) -> LatencySummary:
    """p50, p95 and max of ``values``."""
    return LatencySummary(
        count=len(values),
        p50=percentile(values, 50.0),
        p95=percentile(values, 95.0),
        max=max(values) if values else None,
    )


def arrival_latency(received_at: float, capture_start: float, duration: float) -> float:
    """Age of a part's newest sample when its last byte arrived (see module docstring)."""
    return received_at - (capture_start + duration)


@dataclass(frozen=True)
class Played:
    """A part whose playout time became known."""

    capture_start: float | None
    """Wall time its first sample was captured (None without PROGRAM-DATE-TIME)."""
    play_at: float
    """Wall time its first sample is played."""

    @property
    def latency(self) -> float | None:
        """Playout (mouth-to-ear) latency, seconds."""
        return None if self.capture_start is None else self.play_at - self.capture_start


class PlayoutClock:
    """A simulated player: a buffer filled by arriving parts and drained in real time.

    Playback starts when ``start_buffer`` seconds are buffered, and resumes after an underrun
    once ``resume_buffer`` seconds are buffered again. Parts are appended in order; media gaps
    are not modelled (a skipped part simply is not in the buffer).
    """

    def __init__(self, start_buffer: float, resume_buffer: float) -> None:
        if start_buffer < 0 or resume_buffer < 0:
            raise ValueError("buffer thresholds must be >= 0")
        self.start_buffer = start_buffer
        self.resume_buffer = resume_buffer
        self.started_at: float | None = None
        """Wall time playback first started."""
        self.stalls = 0
        """Underruns so far."""
        self.stall_seconds = 0.0
        """Total time spent re-buffering after underruns."""
        self._playing = False
        self._buffer_end = 0.0  # media seconds received so far
        self._anchor_wall = 0.0  # while playing: media position _anchor_media plays at this time
        self._anchor_media = 0.0
        self._stall_start: float | None = None
        self._pending: list[tuple[float, float | None]] = []  # (media start, capture start)

    @property
    def playing(self) -> bool:
        """Whether the simulated player was playing at the last event."""
        return self._playing

    def position(self, now: float) -> float:
        """Media seconds played by ``now`` (before accounting an underrun at ``now``)."""
        if not self._playing:
            return self._anchor_media
        return min(self._buffer_end, self._anchor_media + (now - self._anchor_wall))

    def buffered(self, now: float) -> float:
        """Seconds of media buffered ahead of the play position at ``now``."""
        return self._buffer_end - self.position(now)

    def _advance(self, now: float) -> None:
        if not self._playing:
            return
        dry_at = self._anchor_wall + (self._buffer_end - self._anchor_media)
        if now > dry_at + _EPS:
            self._playing = False
            self._anchor_media = self._buffer_end
            self._stall_start = dry_at
            self.stalls += 1

    def add(self, now: float, duration: float, capture_start: float | None) -> list[Played]:
        """A part of ``duration`` seconds arrived at ``now``; returns the parts whose playout
        time became known (this one if playing, else every waiting one once playback starts)."""
        if duration < 0:
            raise ValueError("duration must be >= 0")
        self._advance(now)
        media_start = self._buffer_end
        self._buffer_end += duration
        if self._playing:
            return [Played(capture_start, self._anchor_wall + media_start - self._anchor_media)]
        self._pending.append((media_start, capture_start))
        threshold = self.start_buffer if self.started_at is None else self.resume_buffer
        if self._buffer_end - self._anchor_media + _EPS < threshold:
            return []
        return self._start(now)

    def _start(self, now: float) -> list[Played]:
        self._playing = True
        self._anchor_wall = now
        if self.started_at is None:
            self.started_at = now
        if self._stall_start is not None:
            self.stall_seconds += now - self._stall_start
            self._stall_start = None
        played = [
            Played(capture, now + start - self._anchor_media) for start, capture in self._pending
        ]
        self._pending = []
        return played

    def finish(self, now: float, *, ended: bool) -> list[Played]:
        """The listener stops at ``now``. If the stream ended, the rest of the buffer plays out
        (parts still waiting start playing now, as a player does at the end of a stream);
        otherwise an underrun before ``now`` counts as a stall lasting until ``now``."""
        if ended:
            if not self._playing and self._pending:
                return self._start(now)
            return []
        self._advance(now)
        if self._stall_start is not None:
            self.stall_seconds += max(0.0, now - self._stall_start)
            self._stall_start = None
        return []
