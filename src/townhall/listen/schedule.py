"""Pure planning for a live follower: where to start, and what to fetch next from a playlist.

Positions are ``(msn, part index)``; a whole segment is fetched only when its parts are not
listed (an old segment, or a playlist without parts), and then occupies ``(msn, 0)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from townhall.listen.playlist import MediaPlaylist, SegmentInfo

_EPS = 1e-6

Position = tuple[int, int]


@dataclass(frozen=True)
class Unit:
    """One media object to fetch: a part, or a whole segment (``part`` is None)."""

    msn: int
    """Media sequence number of the (parent) segment."""
    part: int | None
    """Part index, or None for a whole segment."""
    uri: str
    """URI as written in the playlist."""
    duration: float
    """Seconds of media."""
    capture_start: float | None
    """Wall time of its first sample (segment PDT + part offset), None without PDT."""
    gap: bool = False
    """Marked GAP=YES: not available, do not fetch."""


@dataclass(frozen=True)
class Plan:
    """What a playlist offers from a position onwards."""

    units: tuple[Unit, ...]
    """Units to fetch, in order."""
    next_position: Position
    """Position to ask for in the next blocking reload."""
    skipped: int
    """Segments (or rests of segments) that were no longer available (the follower fell
    behind the playlist window)."""


def _all_segments(pl: MediaPlaylist) -> list[SegmentInfo]:
    segs = list(pl.segments)
    if pl.open_segment is not None:
        segs.append(pl.open_segment)
    return segs


def live_edge(pl: MediaPlaylist) -> Position:
    """Position just after the last listed part (or segment)."""
    if pl.open_segment is not None:
        return pl.open_segment.msn, len(pl.open_segment.parts)
    return pl.next_msn, 0


def start_position(pl: MediaPlaylist, hold_back: float | None = None) -> Position:
    """Where a player joining now starts: the part (or, without parts, the segment) at least
    ``hold_back`` seconds (default: PART-HOLD-BACK / HOLD-BACK) before the end of the playlist.
    With PART-HOLD-BACK = 3 part targets that is the third part from the end."""
    back = pl.hold_back_seconds() if hold_back is None else hold_back
    total = 0.0
    if pl.part_target is not None:
        parts = pl.parts()
        for part in reversed(parts):
            total += part.duration
            if total + _EPS >= back:
                return part.position
        if parts:
            return parts[0].position
        return live_edge(pl)
    for seg in reversed(pl.segments):
        total += seg.duration
        if total + _EPS >= back:
            return seg.msn, 0
    if pl.segments:
        return pl.segments[0].msn, 0
    return pl.next_msn, 0


def plan(pl: MediaPlaylist, position: Position) -> Plan:
    """Units listed at or after ``position``, the position after them and what was skipped."""
    msn, index = position
    units: list[Unit] = []
    skipped = 0
    for seg in _all_segments(pl):
        if seg.msn < msn:
            continue
        if seg.msn > msn:  # segment msn (or its rest) is gone from the window
            skipped += seg.msn - msn
            msn, index = seg.msn, 0
        complete = seg.uri is not None
        if seg.parts and pl.part_target is not None:
            for p in seg.parts[index:]:
                start = None if seg.pdt is None else seg.pdt + p.offset
                units.append(Unit(p.msn, p.index, p.uri, p.duration, start, p.gap))
            if complete:
                msn, index = seg.msn + 1, 0
            else:
                msn, index = seg.msn, max(index, len(seg.parts))
        elif complete and seg.uri is not None:
            if index == 0:
                units.append(Unit(seg.msn, None, seg.uri, seg.duration, seg.pdt, seg.gap))
            else:
                skipped += 1
            msn, index = seg.msn + 1, 0
    return Plan(tuple(units), (msn, index), skipped)


def vod_plan(pl: MediaPlaylist) -> Plan:
    """Everything in a finished playlist: whole segments, then the parts of an open segment."""
    units = [Unit(s.msn, None, s.uri, s.duration, s.pdt, s.gap) for s in pl.segments if s.uri]
    seg = pl.open_segment
    if seg is not None:
        for p in seg.parts:
            start = None if seg.pdt is None else seg.pdt + p.offset
            units.append(Unit(p.msn, p.index, p.uri, p.duration, start, p.gap))
    return Plan(tuple(units), live_edge(pl), 0)
