"""Pure LL-HLS media playlist model and renderer (RFC 8216bis), no I/O and no clock.

URIs are relative: ``init.mp4``, ``seg{msn}.m4s``, ``part{msn}.{idx}.m4s``.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

INIT_URI = "init.mp4"
LIVE_PLAYLIST = "live.m3u8"
VOD_PLAYLIST = "replay.m3u8"
PLAYLIST_VERSION = 6
"""EXT-X-MAP in a non-I-frame playlist needs version 6; no tag used here needs more."""


def segment_uri(msn: int) -> str:
    """Relative URI of a complete segment."""
    return f"seg{msn}.m4s"


def part_uri(msn: int, index: int) -> str:
    """Relative URI of a part."""
    return f"part{msn}.{index}.m4s"


@dataclass(frozen=True)
class Part:
    """One partial segment (an fMP4 fragment)."""

    msn: int
    """Media sequence number of the parent segment."""
    index: int
    """Part index within the parent segment, from 0."""
    duration: float
    """Duration in seconds."""
    independent: bool
    """Starts with an independent frame (always true for AAC)."""
    uri: str
    """Relative URI."""


@dataclass(frozen=True)
class Segment:
    """One complete media segment."""

    msn: int
    """Media sequence number."""
    duration: float
    """Duration in seconds (EXTINF)."""
    pdt: datetime
    """Wall-clock time of the first sample (EXT-X-PROGRAM-DATE-TIME), timezone-aware."""
    uri: str
    """Relative URI."""
    parts: tuple[Part, ...] = ()
    """Its parts (listed only near the live edge)."""
    discontinuity: bool = False
    """Preceded by EXT-X-DISCONTINUITY (a gap in a recovered recording)."""


def target_duration(durations: Iterable[float], floor: float) -> int:
    """EXT-X-TARGETDURATION: every EXTINF rounded to the nearest integer must not exceed it
    (RFC 8216bis 4.4.3.1). ``floor`` is the nominal segment duration, so the value never changes
    while a live playlist runs."""
    longest = max([floor, *durations])
    return max(1, math.floor(longest + 0.5))


def format_pdt(pdt: datetime) -> str:
    """ISO 8601 with milliseconds in UTC, e.g. ``2025-01-02T03:04:05.678Z``."""
    if pdt.tzinfo is None:
        raise ValueError("PDT must be timezone-aware")
    utc = pdt.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _segment_lines(seg: Segment, with_parts: bool) -> list[str]:
    lines: list[str] = []
    if seg.discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(seg.pdt)}")
    if with_parts:
        lines.extend(_part_line(p) for p in seg.parts)
    lines.append(f"#EXTINF:{seg.duration:.5f},")
    lines.append(seg.uri)
    return lines


def _part_line(part: Part) -> str:
    line = f'#EXT-X-PART:DURATION={part.duration:.5f},URI="{part.uri}"'
    return line + (",INDEPENDENT=YES" if part.independent else "")


def render_vod(
    segments: Sequence[Segment], *, init_uri: str = INIT_URI, nominal_duration: float = 0.0
) -> str:
    """A complete VOD playlist (EXT-X-PLAYLIST-TYPE:VOD, EXT-X-ENDLIST) for a recording."""
    first = segments[0].msn if segments else 0
    td = target_duration((s.duration for s in segments), nominal_duration)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{PLAYLIST_VERSION}",
        f"#EXT-X-TARGETDURATION:{td}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
        f'#EXT-X-MAP:URI="{init_uri}"',
    ]
    for seg in segments:
        lines.extend(_segment_lines(seg, with_parts=False))
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


class Readiness(Enum):
    """Outcome of checking a blocking playlist reload request against the playlist."""

    READY = "ready"
    """The requested segment/part is in the playlist: respond now."""
    WAIT = "wait"
    """Valid but not yet available: hold the request (up to ``blocking_timeout``)."""
    BAD_REQUEST = "bad_request"
    """Invalid or too far ahead: respond 400 immediately."""


@dataclass(frozen=True)
class BlockingRequest:
    """Result of validating ``_HLS_msn``/``_HLS_part``."""

    readiness: Readiness
    """What the HTTP layer should do."""
    msn: int | None
    """Requested media sequence number (None: no blocking request)."""
    part: int | None
    """Requested part index, normalised (None: wait for the whole segment)."""
    reason: str = ""
    """Why the request was refused (for logs)."""


_DIRECTIVE = re.compile(r"[0-9]{1,15}")


class LivePlaylist:
    """Sliding-window LL-HLS media playlist.

    Feed it parts in order with :meth:`add_part` and close each segment with
    :meth:`complete_segment`. Segments and parts are immutable once added.
    """

    def __init__(
        self,
        *,
        part_target: float,
        parts_per_segment: int,
        nominal_segment_duration: float,
        window_segments: int = 6,
        part_hold_back: float | None = None,
        first_msn: int = 0,
        init_uri: str = INIT_URI,
        discontinuity_sequence: int | None = None,
    ) -> None:
        """``discontinuity_sequence``: set when this playlist continues another origin's
        (failover): the first segment (``first_msn``) gets EXT-X-DISCONTINUITY and the
        playlist carries EXT-X-DISCONTINUITY-SEQUENCE, starting at this value (the
        discontinuity sequence number of the previous origin's last segment)."""
        if part_hold_back is None:
            part_hold_back = 3.0 * part_target
        if part_hold_back < 2.0 * part_target:
            raise ValueError("PART-HOLD-BACK must be at least twice PART-TARGET")
        self.part_target = part_target
        self.parts_per_segment = parts_per_segment
        self.nominal_segment_duration = nominal_segment_duration
        self.window_segments = window_segments
        self.part_hold_back = part_hold_back
        self.init_uri = init_uri
        self._segments: deque[Segment] = deque(maxlen=window_segments)
        self._open_msn = first_msn
        self._open_parts: list[Part] = []
        self._open_pdt: datetime | None = None
        self._max_duration = 0.0
        self._discontinuity_msn = first_msn if discontinuity_sequence is not None else None
        self._discontinuity_sequence = discontinuity_sequence

    # -- feeding -------------------------------------------------------------------------------

    def add_part(self, part: Part, pdt: datetime) -> None:
        """Append the next part of the open segment; ``pdt`` is that segment's PDT (used for the
        first part)."""
        if part.msn != self._open_msn or part.index != len(self._open_parts):
            raise ValueError(
                f"out-of-order part {part.msn}.{part.index}, expected "
                f"{self._open_msn}.{len(self._open_parts)}"
            )
        if part.index >= self.parts_per_segment:
            raise ValueError("too many parts in one segment")
        if part.duration > self.part_target + 1e-9:
            raise ValueError("part longer than PART-TARGET")
        if not self._open_parts:
            self._open_pdt = pdt
        self._open_parts.append(part)

    def complete_segment(self, msn: int, uri: str | None = None) -> Segment:
        """Close the open segment ``msn`` (duration = sum of its parts) and slide the window."""
        if msn != self._open_msn or not self._open_parts or self._open_pdt is None:
            raise ValueError(f"segment {msn} is not the open segment or has no parts")
        seg = Segment(
            msn=msn,
            duration=sum(p.duration for p in self._open_parts),
            pdt=self._open_pdt,
            uri=uri if uri is not None else segment_uri(msn),
            parts=tuple(self._open_parts),
            discontinuity=msn == self._discontinuity_msn,
        )
        if len(self._segments) == self.window_segments and self._segments[0].discontinuity:
            assert self._discontinuity_sequence is not None
            self._discontinuity_sequence += 1  # RFC 8216bis 6.2.2: its tag leaves the playlist
        self._segments.append(seg)
        self._max_duration = max(self._max_duration, seg.duration)
        self._open_msn += 1
        self._open_parts = []
        self._open_pdt = None
        return seg

    # -- queries -------------------------------------------------------------------------------

    @property
    def segments(self) -> tuple[Segment, ...]:
        """Complete segments currently in the window."""
        return tuple(self._segments)

    @property
    def media_sequence(self) -> int:
        """EXT-X-MEDIA-SEQUENCE: MSN of the first segment in the playlist."""
        return self._segments[0].msn if self._segments else self._open_msn

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION in whole seconds."""
        return target_duration([self._max_duration], self.nominal_segment_duration)

    @property
    def blocking_timeout(self) -> float:
        """How long a blocking reload may be held: three target durations (RFC 8216bis 6.2.5.2);
        on expiry the server should answer 503."""
        return 3.0 * self.target_duration

    @property
    def advance_part_limit(self) -> float:
        """How many parts beyond the last one a client may ask for (RFC 8216bis 6.2.5.2)."""
        return 3.0 / self.part_target if self.part_target < 1.0 else 3.0

    def next_part_position(self) -> tuple[int, int]:
        """(msn, part index) of the next part to be produced: the EXT-X-PRELOAD-HINT target."""
        if len(self._open_parts) >= self.parts_per_segment:
            return self._open_msn + 1, 0
        return self._open_msn, len(self._open_parts)

    def last_part_position(self) -> tuple[int, int] | None:
        """(msn, index) of the newest part, None before the first one."""
        if self._open_parts:
            return self._open_msn, len(self._open_parts) - 1
        if self._segments:
            last = self._segments[-1]
            if last.msn == self._open_msn - 1 and last.parts:
                return last.msn, last.parts[-1].index
            return self._open_msn - 1, self.parts_per_segment - 1
        if self._open_msn > 0:  # resumed programme: earlier segments are in the recording
            return self._open_msn - 1, self.parts_per_segment - 1
        return None

    def _normalise(self, msn: int, part: int) -> tuple[int, int]:
        # A part index beyond the last part of a segment means part 0 of the next one.
        if part >= self.parts_per_segment:
            return msn + 1, 0
        if msn < self._open_msn and self._segments and msn == self._segments[-1].msn:
            if part >= len(self._segments[-1].parts):
                return msn + 1, 0
        return msn, part

    def has_segment(self, msn: int) -> bool:
        """Whether segment ``msn`` is complete (or already slid out of the window)."""
        return msn < self._open_msn

    def has_part(self, msn: int, part: int) -> bool:
        """Whether part ``part`` of segment ``msn`` (normalised) is in, or older than, the
        playlist."""
        return self._normalise(msn, part) < self.next_part_position()

    def check_request(self, msn: str | None, part: str | None) -> BlockingRequest:
        """Validate raw ``_HLS_msn``/``_HLS_part`` query values (RFC 8216bis 6.2.5.2).

        - no directives: READY (plain reload);
        - ``_HLS_part`` without ``_HLS_msn``, non-decimal, negative or absurd values: BAD_REQUEST;
        - ``_HLS_msn`` beyond the last segment's MSN plus two, or a part beyond the last part by
          more than the Advance Part Limit: BAD_REQUEST;
        - otherwise READY if present, else WAIT.
        """
        if msn is None:
            if part is not None:
                return BlockingRequest(Readiness.BAD_REQUEST, None, None, "_HLS_part without msn")
            return BlockingRequest(Readiness.READY, None, None)
        if not _DIRECTIVE.fullmatch(msn) or (part is not None and not _DIRECTIVE.fullmatch(part)):
            return BlockingRequest(Readiness.BAD_REQUEST, None, None, "not a decimal integer")
        m = int(msn)
        last_msn = self._open_msn if self._open_parts else self._open_msn - 1
        if m > last_msn + 2:
            return BlockingRequest(Readiness.BAD_REQUEST, m, None, "msn too far ahead")
        if part is None:
            ready = self.has_segment(m)
            return BlockingRequest(Readiness.READY if ready else Readiness.WAIT, m, None)
        pm, pp = self._normalise(m, int(part))
        last = self.last_part_position()
        last_abs = -1 if last is None else last[0] * self.parts_per_segment + last[1]
        if pm * self.parts_per_segment + pp - last_abs > self.advance_part_limit:
            return BlockingRequest(Readiness.BAD_REQUEST, pm, pp, "part too far ahead")
        ready = self.has_part(pm, pp)
        return BlockingRequest(Readiness.READY if ready else Readiness.WAIT, pm, pp)

    # -- rendering -----------------------------------------------------------------------------

    def render(self, *, ended: bool = False) -> str:
        """The live media playlist; with ``ended`` it gets EXT-X-ENDLIST and no preload hint."""
        td = self.target_duration
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{PLAYLIST_VERSION}",
            f"#EXT-X-TARGETDURATION:{td}",
            f"#EXT-X-PART-INF:PART-TARGET={self.part_target:.5f}",
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={self.part_hold_back:.5f}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            f'#EXT-X-MAP:URI="{self.init_uri}"',
        ]
        if self._discontinuity_sequence is not None:
            lines.insert(-1, f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}")
        # Parts are listed for segments within three target durations of the live edge.
        horizon = 3.0 * td
        age = sum(p.duration for p in self._open_parts)
        listed: list[bool] = []
        for seg in reversed(self._segments):
            listed.append(age < horizon)
            age += seg.duration
        for seg, with_parts in zip(self._segments, reversed(listed), strict=True):
            lines.extend(_segment_lines(seg, with_parts=with_parts))
        if self._open_parts and self._open_pdt is not None:
            if self._open_msn == self._discontinuity_msn:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(self._open_pdt)}")
            lines.extend(_part_line(p) for p in self._open_parts)
        if ended:
            lines.append("#EXT-X-ENDLIST")
        else:
            nmsn, nidx = self.next_part_position()
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{part_uri(nmsn, nidx)}"')
        return "\n".join(lines) + "\n"
