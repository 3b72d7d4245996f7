"""Where a standby continues a space's programme when it takes the origin over (pure core).

The new origin must never hand a player a media sequence number, part or decode time that
the dead origin may already have published with other bytes (parts and segments are cached
as immutable), and must never go backwards. The standby knows the last position it saw in
the old origin's playlist (it follows with blocking reloads, so it lags by at most the part in
flight) and the last complete segment it recorded.

Rules (see ``docs/failover.md``):

- the segment the old origin was building is abandoned: the new origin starts a fresh MSN;
- if the last part seen closed its segment, the old origin may have published part 0 of the
  next segment unseen, so that MSN is skipped too;
- decode time continues as if every skipped segment had been full length (tfdt never
  overlaps anything the old origin may have published); the first new segment carries
  EXT-X-DISCONTINUITY because its content and PDT do not follow the previous segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ORPHAN_MSN_MARGIN = 4
"""Segments beyond the wall-clock estimate an orphan takeover starts at (see
:func:`plan_orphan_takeover`)."""


@dataclass(frozen=True)
class Takeover:
    """Where a taken-over programme continues."""

    next_msn: int
    """MSN of the first segment the new origin produces."""
    next_decode_time: int
    """tfdt (samples) of its first part."""
    discontinuity_sequence: int
    """EXT-X-DISCONTINUITY-SEQUENCE of the new playlist: the discontinuity sequence number of
    the old origin's last segment (the new first segment adds one with its tag)."""


def plan_takeover(
    *,
    last_seen: tuple[int, int] | None,
    last_recorded: tuple[int, int] | None,
    parts_per_segment: int,
    segment_samples: int,
    discontinuity_sequence: int,
) -> Takeover | None:
    """Plan a takeover. ``last_seen``: newest (msn, part) seen in the old origin's playlist;
    ``last_recorded``: (msn, end decode time) of the newest complete segment recorded.
    None when nothing was ever seen (then no safe number exists)."""
    if last_seen is None and last_recorded is None:
        return None
    seen_msn, seen_part = last_seen if last_seen is not None else (-1, 0)
    if last_recorded is not None and last_recorded[0] >= seen_msn:
        seen_msn, seen_part = last_recorded[0], parts_per_segment - 1
    next_msn = seen_msn + 1
    if seen_part >= parts_per_segment - 1:
        next_msn += 1  # part 0 of seen_msn + 1 may exist unseen
    if last_recorded is not None:
        rec_msn, rec_end = last_recorded
        decode = rec_end + (next_msn - rec_msn - 1) * segment_samples
    else:
        decode = next_msn * segment_samples  # the nominal timeline: tfdt = msn x segment
    return Takeover(next_msn, decode, discontinuity_sequence)


def plan_orphan_takeover(
    *, started_at: float, now: float, segment_seconds: float, segment_samples: int
) -> Takeover:
    """Plan the takeover of an orphan: a live space whose origin died before any standby saw
    its playlist, so nothing tells which numbers it published.

    The wall clock does: a programme makes one segment per segment duration from the space's
    start and never runs ahead of real time (the mixer skips ticks it is late for, it never
    bunches them), a resumed recording continues from its last segment (behind the clock, the
    downtime is not counted), and a standby takeover skips at most two numbers while at least
    one segment's worth of time passes. So no published MSN reaches ``ceil(elapsed / segment)``
    plus one segment in progress, and :data:`ORPHAN_MSN_MARGIN` segments beyond it are unused.
    Decode time follows the nominal timeline (``tfdt = msn x segment``) as in
    :func:`plan_takeover`. The discontinuity sequence restarts at 0: the old value is unknown,
    and the first new segment carries EXT-X-DISCONTINUITY either way."""
    if segment_seconds <= 0 or segment_samples <= 0:
        raise ValueError("segment duration must be positive")
    elapsed = max(0.0, now - started_at)
    next_msn = math.ceil(elapsed / segment_seconds) + ORPHAN_MSN_MARGIN
    return Takeover(next_msn, next_msn * segment_samples, 0)
