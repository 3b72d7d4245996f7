"""Pure standard-HLS live playlist (RFC 8216bis, no LL-HLS tags), no I/O and no clock.

For edges that cannot hold blocking LL-HLS requests: each standard segment is a group of
:attr:`~townhall.packaging.config.PackagingConfig.standard_group` consecutive LL-HLS segments
(standard segment ``k`` covers the MSNs with ``msn // group == k``), so a listener asks for
fewer, longer segments. Its bytes are the concatenation of its members' bytes (an fMP4 media
segment may hold several moof+mdat fragments). URIs are relative: ``init.mp4``, ``std{k}.m4s``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from townhall.packaging.playlist import (
    INIT_URI,
    PLAYLIST_VERSION,
    Segment,
    format_pdt,
    target_duration,
)

STANDARD_PLAYLIST = "std.m3u8"
MIN_WINDOW = 5
"""Fewest standard segments listed (more when segments are shorter than the target
duration's rounding allows): the playlist spans at least three target durations plus one
segment, as RFC 8216bis 6.2.2 asks of a live playlist."""


def standard_segment_uri(seq: int) -> str:
    """Relative URI of a standard segment."""
    return f"std{seq}.m4s"


@dataclass(frozen=True)
class StandardSegment:
    """One standard-HLS media segment: a run of consecutive LL-HLS segments."""

    seq: int
    """Media sequence number (the group number: member MSN // group)."""
    duration: float
    """Duration in seconds (EXTINF): the sum of its members'."""
    pdt: datetime
    """Wall-clock time of the first sample (its first member's PDT)."""
    uri: str
    """Relative URI."""
    members: tuple[int, ...]
    """MSNs of the LL-HLS segments it is made of, in order."""
    discontinuity: bool = False
    """Preceded by EXT-X-DISCONTINUITY (its first member is)."""


class StandardPlaylist:
    """Sliding-window standard-HLS media playlist built from the LL-HLS segments.

    Feed it every completed :class:`Segment` in order with :meth:`add` (starting at
    ``first_msn``); a standard segment completes with its last member, or at :meth:`finish`
    (a short trailing group). When ``first_msn`` is not a multiple of ``group`` (a resumed or
    taken-over programme), the first group holds only the MSNs from ``first_msn`` on.
    """

    def __init__(
        self,
        *,
        group: int,
        nominal_segment_duration: float,
        window: int | None = None,
        first_msn: int = 0,
        init_uri: str = INIT_URI,
        discontinuity_sequence: int | None = None,
    ) -> None:
        """``window``: standard segments listed (default: enough for three target durations
        plus one segment, at least :data:`MIN_WINDOW`). ``discontinuity_sequence``: as for
        :class:`~townhall.packaging.playlist.LivePlaylist` (the playlist then carries
        EXT-X-DISCONTINUITY-SEQUENCE, raised when a discontinuity slides out)."""
        if group < 1:
            raise ValueError("a standard segment needs at least one LL-HLS segment")
        if first_msn < 0:
            raise ValueError("first_msn must be >= 0")
        self.group = group
        self.nominal_duration = group * nominal_segment_duration
        """Nominal standard segment duration in seconds."""
        if window is None:
            td = target_duration([], self.nominal_duration)
            window = max(MIN_WINDOW, math.ceil(3 * td / self.nominal_duration) + 1)
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self.init_uri = init_uri
        self.first_msn = first_msn
        self._segments: deque[StandardSegment] = deque(maxlen=window)
        self._next_msn = first_msn
        self._open: list[Segment] = []
        self._max_duration = 0.0
        self._last_seq: int | None = None
        self._discontinuity_sequence = discontinuity_sequence

    # -- feeding -------------------------------------------------------------------------------

    def add(self, segment: Segment) -> StandardSegment | None:
        """Take the next completed LL-HLS segment; the standard segment it completes, if any."""
        if segment.msn != self._next_msn:
            raise ValueError(f"out-of-order segment {segment.msn}, expected {self._next_msn}")
        self._open.append(segment)
        self._next_msn += 1
        if segment.msn % self.group == self.group - 1:
            return self._close()
        return None

    def finish(self) -> StandardSegment | None:
        """The programme ended: close the trailing (short) group, if any."""
        return self._close() if self._open else None

    def _close(self) -> StandardSegment:
        first = self._open[0]
        std = StandardSegment(
            seq=first.msn // self.group,
            duration=sum(s.duration for s in self._open),
            pdt=first.pdt,
            uri=standard_segment_uri(first.msn // self.group),
            members=tuple(s.msn for s in self._open),
            discontinuity=first.discontinuity,
        )
        self._open = []
        if len(self._segments) == self.window and self._segments[0].discontinuity:
            if self._discontinuity_sequence is not None:
                self._discontinuity_sequence += 1  # RFC 8216bis 6.2.2: its tag leaves
        self._segments.append(std)
        self._max_duration = max(self._max_duration, std.duration)
        self._last_seq = std.seq
        return std

    # -- queries -------------------------------------------------------------------------------

    @property
    def segments(self) -> tuple[StandardSegment, ...]:
        """Standard segments currently in the window."""
        return tuple(self._segments)

    @property
    def media_sequence(self) -> int:
        """EXT-X-MEDIA-SEQUENCE: the first listed segment's, else the group of the next MSN."""
        return self._segments[0].seq if self._segments else self._next_msn // self.group

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION in whole seconds (stable: from the nominal duration)."""
        return target_duration([self._max_duration], self.nominal_duration)

    def members(self, seq: int) -> tuple[int, ...] | None:
        """MSNs that standard segment ``seq`` is made of, None if it is not complete (or never
        will be). Segments before this playlist's first group (an earlier run of the programme)
        are taken as whole groups."""
        for std in self._segments:
            if std.seq == seq:
                return std.members
        if seq < 0 or (self._last_seq is None and seq >= self.first_msn // self.group):
            return None
        if self._last_seq is not None and seq > self._last_seq:
            return None
        start = seq * self.group
        if seq == self.first_msn // self.group:
            start = self.first_msn
        return tuple(range(start, (seq + 1) * self.group))

    # -- rendering -----------------------------------------------------------------------------

    def render(self, *, ended: bool = False) -> str:
        """The standard live media playlist; with ``ended`` it gets EXT-X-ENDLIST."""
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{PLAYLIST_VERSION}",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
        ]
        if self._discontinuity_sequence is not None:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}")
        lines.append(f'#EXT-X-MAP:URI="{self.init_uri}"')
        for std in self._segments:
            if std.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(std.pdt)}")
            lines.append(f"#EXTINF:{std.duration:.5f},")
            lines.append(std.uri)
        if ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"
