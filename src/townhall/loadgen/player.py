"""Pure playout model of one LL-HLS listener: parts received against a playout clock.

A real player (hls.js, Safari) starts a few parts behind the live edge, starts playing when
the first part is buffered and then consumes media in real time. If the next part has not
arrived when the playhead reaches the end of the buffer, playback stalls (a buffer underrun)
until it arrives. This model does the same bookkeeping without decoding anything; it keeps
O(1) state, takes ``now`` as an argument and does no I/O.

Positions are absolute part numbers ``msn * parts_per_segment + index``.
"""

from __future__ import annotations

from dataclasses import dataclass

START_PARTS = 3
"""Parts behind the live edge a player starts at (PART-HOLD-BACK = 3 part targets)."""


def absolute_part(msn: int, index: int, parts_per_segment: int) -> int:
    """Absolute part number of part ``index`` of segment ``msn``."""
    return msn * parts_per_segment + index


def part_position(absolute: int, parts_per_segment: int) -> tuple[int, int]:
    """``(msn, index)`` of an absolute part number; the msn increments after the last part."""
    return divmod(absolute, parts_per_segment)


def start_position(last_listed: int, first_listed: int, start_parts: int = START_PARTS) -> int:
    """First part to play: ``start_parts`` parts behind (and including) the newest listed part,
    but never before the oldest part still listed."""
    return max(first_listed, last_listed - start_parts + 1)


@dataclass(frozen=True)
class Stalled:
    """The playout buffer ran dry before a part arrived (a rebuffering event)."""

    at: float
    """When the playhead reached the end of the buffer."""
    duration: float
    """How long playback was frozen (until the missing part arrived)."""
    during_warmup: bool
    """Whether it began within the warm-up after playback started."""


class Playout:
    """Buffer and playhead of one listener.

    Call :meth:`received` with each part as it arrives (in order); it returns the stall that
    ended with this arrival, if any. :meth:`stalled_now` tells whether the buffer is empty at
    ``now`` (a stall in progress, e.g. at the end of a run).
    """

    def __init__(self, part_duration: float, warmup: float = 2.0) -> None:
        if part_duration <= 0:
            raise ValueError("part_duration must be positive")
        self.part_duration = part_duration
        self.warmup = warmup
        self.started_at: float | None = None
        """When playback started (arrival of the first part)."""
        self.next_part: int | None = None
        """The part the buffer needs next (absolute number)."""
        self.stalls = 0
        """Stalls after the warm-up."""
        self.warmup_stalls = 0
        """Stalls that began within the warm-up."""
        self.stalled_seconds = 0.0
        """Total frozen time (both kinds)."""
        self.parts = 0
        """Parts received."""
        self.last_received_at: float | None = None
        """Arrival time of the newest part."""
        self.skipped = 0
        """Parts the listener never got (it jumped ahead after an error)."""
        self._anchor_time = 0.0
        self._anchor_media = 0.0  # buffered media (s) consumed at _anchor_time, from 0
        self._buffered = 0.0  # media seconds received since playback started

    def dry_at(self) -> float | None:
        """When the playhead reaches the end of the buffer if nothing else arrives."""
        if self.started_at is None:
            return None
        return self._anchor_time + (self._buffered - self._anchor_media)

    def buffer_at(self, now: float) -> float:
        """Seconds of media buffered ahead of the playhead at ``now`` (0 while stalled)."""
        dry = self.dry_at()
        return 0.0 if dry is None else max(0.0, dry - now)

    def received(self, position: int, now: float) -> Stalled | None:
        """A part arrived at ``now``. Parts must come in order; a gap (a part never fetched)
        counts as skipped media, not as buffered."""
        self.parts += 1
        self.last_received_at = now
        if self.started_at is None or self.next_part is None:
            self.started_at = now
            self._anchor_time = now
            self._anchor_media = 0.0
            self._buffered = self.part_duration
            self.next_part = position + 1
            return None
        if position < self.next_part:
            raise ValueError(f"part {position} arrived after part {self.next_part - 1}")
        self.skipped += position - self.next_part
        self.next_part = position + 1
        stall: Stalled | None = None
        dry = self._anchor_time + (self._buffered - self._anchor_media)
        if now > dry:
            warm = dry - self.started_at < self.warmup
            stall = Stalled(at=dry, duration=now - dry, during_warmup=warm)
            if warm:
                self.warmup_stalls += 1
            else:
                self.stalls += 1
            self.stalled_seconds += now - dry
            self._anchor_time = now
            self._anchor_media = self._buffered
        self._buffered += self.part_duration
        return stall

    def stalled_now(self, now: float) -> bool:
        """Whether the buffer is empty at ``now`` (playback frozen)."""
        dry = self.dry_at()
        return dry is not None and now > dry

    def finish(self, now: float) -> Stalled | None:
        """The run ends at ``now``: a stall in progress counts (its duration so far)."""
        dry = self.dry_at()
        if self.started_at is None or dry is None or now <= dry:
            return None
        warm = dry - self.started_at < self.warmup
        if warm:
            self.warmup_stalls += 1
        else:
            self.stalls += 1
        self.stalled_seconds += now - dry
        self._anchor_time = now
        self._anchor_media = self._buffered
        return Stalled(at=dry, duration=now - dry, during_warmup=warm)

    def restart(self) -> None:
        """Forget the playhead (after an error the player reloads and starts again)."""
        self.started_at = None
        self.next_part = None
