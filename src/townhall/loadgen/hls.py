"""Just enough LL-HLS playlist reading for a simulated player (pure, bytes in, numbers out).

The full scan runs once per (re)start; the cheap :func:`hint_position` runs on every
blocking reload answer (it looks only at the last lines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PARTS_PER_SEGMENT = 4
DEFAULT_PART_TARGET = 0.512

_PART_URI = re.compile(rb'URI="[^"]*?part([0-9]+)\.([0-9]+)\.m4s"')
_HINT = b"#EXT-X-PRELOAD-HINT:"
_PART_INF = re.compile(rb"#EXT-X-PART-INF:PART-TARGET=([0-9.]+)")
_SEGMENTS = {
    stem: re.compile(
        rb"^#EXTINF:([0-9.]+),?[^\n]*\n(?:#[^\n]*\n)*[^#\n]*?" + stem + rb"([0-9]+)\.m4s",
        re.MULTILINE,
    )
    for stem in (b"seg", b"std")
}
"""Segment URIs: ``seg{n}.m4s`` (the LL-HLS playlist's segments) and ``std{n}.m4s`` (the
standard-HLS variant ``std.m3u8``)."""


@dataclass(frozen=True)
class LiveView:
    """What a player needs from a live playlist to start."""

    part_target: float
    """PART-TARGET in seconds."""
    parts_per_segment: int
    """Parts in a complete segment (from the playlist; the default if none is complete)."""
    first_part: tuple[int, int] | None
    """(msn, index) of the oldest part listed."""
    last_part: tuple[int, int] | None
    """(msn, index) of the newest part listed."""
    hint: tuple[int, int] | None
    """(msn, index) of the EXT-X-PRELOAD-HINT part."""


def hint_position(body: bytes) -> tuple[int, int] | None:
    """(msn, index) of the preload-hint part, looking only at the end of the playlist."""
    i = body.rfind(_HINT)
    if i < 0:
        return None
    m = _PART_URI.search(body, i)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


def scan(body: bytes) -> LiveView:
    """Read part target, parts per segment, the listed parts and the hint."""
    inf = _PART_INF.search(body)
    target = float(inf.group(1)) if inf else DEFAULT_PART_TARGET
    parts: list[tuple[int, int]] = []
    complete_counts: list[int] = []
    count = 0
    hint: tuple[int, int] | None = None
    for line in body.splitlines():
        if line.startswith(b"#EXT-X-PART:"):
            m = _PART_URI.search(line)
            if m is not None:
                parts.append((int(m.group(1)), int(m.group(2))))
                count += 1
        elif line.startswith(_HINT):
            m = _PART_URI.search(line)
            if m is not None:
                hint = (int(m.group(1)), int(m.group(2)))
        elif line and not line.startswith(b"#"):
            if count:
                complete_counts.append(count)
            count = 0
    pps = max(complete_counts) if complete_counts else DEFAULT_PARTS_PER_SEGMENT
    return LiveView(
        part_target=target,
        parts_per_segment=pps,
        first_part=parts[0] if parts else None,
        last_part=parts[-1] if parts else None,
        hint=hint,
    )


@dataclass(frozen=True)
class SegmentView:
    """What a standard (non-low-latency) HLS player reads from a live playlist."""

    duration: float
    """EXTINF of the newest complete segment (the reload interval), in seconds."""
    first: int | None
    """Media sequence number of the oldest complete segment listed."""
    last: int | None
    """Media sequence number of the newest complete segment listed."""


def segments(body: bytes, stem: bytes = b"seg") -> SegmentView:
    """Complete segments (``{stem}{n}.m4s`` after an EXTINF) of a playlist; parts are
    ignored."""
    found = [(float(m.group(1)), int(m.group(2))) for m in _SEGMENTS[stem].finditer(body)]
    if not found:
        return SegmentView(DEFAULT_PART_TARGET * DEFAULT_PARTS_PER_SEGMENT, None, None)
    return SegmentView(found[-1][0], found[0][1], found[-1][1])
