"""Pure parser for the HLS media playlists a listener follows (RFC 8216bis), no I/O.

Understands what an LL-HLS audio player needs: target duration, media sequence, EXT-X-MAP,
PROGRAM-DATE-TIME, segments and their parts (EXT-X-PART), the open segment's parts after the
last complete segment, EXT-X-PRELOAD-HINT, EXT-X-SERVER-CONTROL, EXT-X-PART-INF, ENDLIST.
A multivariant playlist is recognised (``variants``) so the follower can pick a media playlist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


class PlaylistError(ValueError):
    """The text is not an HLS playlist this follower can use."""


@dataclass(frozen=True)
class PartInfo:
    """One EXT-X-PART of a segment."""

    msn: int
    """Media sequence number of the parent segment."""
    index: int
    """Index within the parent segment, from 0."""
    duration: float
    """Duration in seconds."""
    uri: str
    """URI as written in the playlist (relative to the playlist URL)."""
    offset: float
    """Seconds from the start of the parent segment to the start of this part."""
    independent: bool = False
    """INDEPENDENT=YES."""
    gap: bool = False
    """GAP=YES: the part is not available."""

    @property
    def position(self) -> tuple[int, int]:
        """(msn, index): orders parts across segments."""
        return self.msn, self.index


@dataclass(frozen=True)
class SegmentInfo:
    """A media segment; ``uri`` is None for the open (incomplete) segment at the live edge."""

    msn: int
    """Media sequence number."""
    duration: float
    """EXTINF, or the sum of the parts so far for the open segment."""
    uri: str | None
    """URI of the complete segment; None while it is still being produced."""
    pdt: float | None
    """PROGRAM-DATE-TIME of its first sample, seconds since the epoch (explicit or derived from
    the previous segment)."""
    parts: tuple[PartInfo, ...] = ()
    """Its parts, when listed."""
    discontinuity: bool = False
    """Preceded by EXT-X-DISCONTINUITY."""
    gap: bool = False
    """EXT-X-GAP."""


@dataclass(frozen=True)
class MediaPlaylist:
    """A parsed media playlist."""

    target_duration: float
    """EXT-X-TARGETDURATION in seconds."""
    media_sequence: int
    """EXT-X-MEDIA-SEQUENCE."""
    segments: tuple[SegmentInfo, ...]
    """Complete segments, oldest first."""
    open_segment: SegmentInfo | None
    """Parts after the last complete segment (the segment being produced), if any."""
    map_uri: str | None
    """EXT-X-MAP URI (init section)."""
    part_target: float | None
    """EXT-X-PART-INF PART-TARGET: set for low-latency playlists."""
    can_block_reload: bool
    """EXT-X-SERVER-CONTROL CAN-BLOCK-RELOAD=YES."""
    part_hold_back: float | None
    """EXT-X-SERVER-CONTROL PART-HOLD-BACK."""
    hold_back: float | None
    """EXT-X-SERVER-CONTROL HOLD-BACK."""
    preload_hint: str | None
    """URI of the EXT-X-PRELOAD-HINT TYPE=PART, if any."""
    ended: bool
    """EXT-X-ENDLIST present: no more segments will be added."""
    playlist_type: str | None
    """EXT-X-PLAYLIST-TYPE (VOD or EVENT), if any."""

    @property
    def is_vod(self) -> bool:
        """Complete and final: a replay (or a live playlist after its end)."""
        return self.ended or self.playlist_type == "VOD"

    @property
    def next_msn(self) -> int:
        """MSN of the segment after the last complete one."""
        return self.media_sequence + len(self.segments)

    def parts(self) -> list[PartInfo]:
        """Every listed part in order, including the open segment's."""
        out = [p for s in self.segments for p in s.parts]
        if self.open_segment is not None:
            out.extend(self.open_segment.parts)
        return out

    def segment(self, msn: int) -> SegmentInfo | None:
        """The complete or open segment ``msn`` if listed."""
        i = msn - self.media_sequence
        if 0 <= i < len(self.segments):
            return self.segments[i]
        if self.open_segment is not None and self.open_segment.msn == msn:
            return self.open_segment
        return None

    def hold_back_seconds(self) -> float:
        """How far behind the end of the playlist to start: PART-HOLD-BACK for low-latency
        playlists, else HOLD-BACK, else three target durations (RFC 8216bis 6.3.3)."""
        if self.part_target is not None:
            return self.part_hold_back or 3.0 * self.part_target
        return self.hold_back or 3.0 * self.target_duration


def attributes(text: str) -> dict[str, str]:
    """An attribute list (``A=1,B="x,y"``) as a dict with quotes removed."""
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _ATTR.findall(text)}


def parse_pdt(text: str) -> float:
    """ISO 8601 date-time with a zone (``2025-01-02T03:04:05.678Z``) as epoch seconds."""
    value = text.strip()
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise PlaylistError(f"bad PROGRAM-DATE-TIME {value!r}") from exc
    if dt.tzinfo is None:
        raise PlaylistError(f"PROGRAM-DATE-TIME without a time zone: {value!r}")
    return dt.timestamp()


def variants(text: str) -> list[str]:
    """URIs of EXT-X-STREAM-INF variants (empty for a media playlist)."""
    lines = [ln.strip() for ln in text.splitlines()]
    out: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF"):
            uri = next((u for u in lines[i + 1 :] if u and not u.startswith("#")), None)
            if uri is not None:
                out.append(uri)
    return out


def _float(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise PlaylistError(f"bad {what}: {value!r}") from exc


class _Builder:
    def __init__(self) -> None:
        self.target = 0.0
        self.media_sequence = 0
        self.segments: list[SegmentInfo] = []
        self.parts: list[PartInfo] = []
        self.pending_pdt: float | None = None
        self.pending_extinf: float | None = None
        self.discontinuity = False
        self.gap = False
        self.last_end: float | None = None  # PDT at the end of the previous segment

    @property
    def msn(self) -> int:
        return self.media_sequence + len(self.segments)

    def add_part(self, attrs: dict[str, str]) -> None:
        if "URI" not in attrs or "DURATION" not in attrs:
            raise PlaylistError("EXT-X-PART without URI or DURATION")
        offset = sum(p.duration for p in self.parts)
        self.parts.append(
            PartInfo(
                msn=self.msn,
                index=len(self.parts),
                duration=_float(attrs["DURATION"], "part duration"),
                uri=attrs["URI"],
                offset=offset,
                independent=attrs.get("INDEPENDENT") == "YES",
                gap=attrs.get("GAP") == "YES",
            )
        )

    def segment_pdt(self) -> float | None:
        return self.pending_pdt if self.pending_pdt is not None else self.last_end

    def add_segment(self, uri: str) -> None:
        if self.pending_extinf is None:
            raise PlaylistError(f"segment {uri!r} without EXTINF")
        pdt = self.segment_pdt()
        seg = SegmentInfo(
            msn=self.msn,
            duration=self.pending_extinf,
            uri=uri,
            pdt=pdt,
            parts=tuple(self.parts),
            discontinuity=self.discontinuity,
            gap=self.gap,
        )
        self.segments.append(seg)
        self.last_end = None if pdt is None else pdt + seg.duration
        self.parts = []
        self.pending_pdt = None
        self.pending_extinf = None
        self.discontinuity = False
        self.gap = False

    def open_segment(self) -> SegmentInfo | None:
        if not self.parts:
            return None
        return SegmentInfo(
            msn=self.msn,
            duration=sum(p.duration for p in self.parts),
            uri=None,
            pdt=self.segment_pdt(),
            parts=tuple(self.parts),
            discontinuity=self.discontinuity,
        )


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Parse a media playlist; raises :class:`PlaylistError` on anything unusable."""
    lines = [ln.strip() for ln in text.splitlines()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("not an HLS playlist (no #EXTM3U)")
    if any(ln.startswith("#EXT-X-STREAM-INF") for ln in lines):
        raise PlaylistError("a multivariant playlist, not a media playlist")
    b = _Builder()
    map_uri: str | None = None
    part_target: float | None = None
    control: dict[str, str] = {}
    hint: str | None = None
    ended = False
    playlist_type: str | None = None
    for line in lines[1:]:
        if not line:
            continue
        if not line.startswith("#"):
            b.add_segment(line)
            continue
        tag, _, value = line.partition(":")
        match tag:
            case "#EXT-X-TARGETDURATION":
                b.target = _float(value, "target duration")
            case "#EXT-X-MEDIA-SEQUENCE":
                try:
                    b.media_sequence = int(value)
                except ValueError as exc:
                    raise PlaylistError(f"bad media sequence {value!r}") from exc
            case "#EXT-X-MAP":
                map_uri = attributes(value).get("URI")
            case "#EXT-X-PART-INF":
                part_target = _float(attributes(value).get("PART-TARGET", ""), "PART-TARGET")
            case "#EXT-X-SERVER-CONTROL":
                control = attributes(value)
            case "#EXT-X-PROGRAM-DATE-TIME":
                b.pending_pdt = parse_pdt(value)
            case "#EXTINF":
                b.pending_extinf = _float(value.split(",", 1)[0], "EXTINF")
            case "#EXT-X-PART":
                b.add_part(attributes(value))
            case "#EXT-X-DISCONTINUITY":
                b.discontinuity = True
            case "#EXT-X-GAP":
                b.gap = True
            case "#EXT-X-PRELOAD-HINT":
                attrs = attributes(value)
                if attrs.get("TYPE") == "PART":
                    hint = attrs.get("URI")
            case "#EXT-X-ENDLIST":
                ended = True
            case "#EXT-X-PLAYLIST-TYPE":
                playlist_type = value.strip()
            case _:
                pass
    if b.target <= 0:
        raise PlaylistError("missing EXT-X-TARGETDURATION")
    return MediaPlaylist(
        target_duration=b.target,
        media_sequence=b.media_sequence,
        segments=tuple(b.segments),
        open_segment=b.open_segment(),
        map_uri=map_uri,
        part_target=part_target,
        can_block_reload=control.get("CAN-BLOCK-RELOAD") == "YES",
        part_hold_back=_float(control["PART-HOLD-BACK"], "PART-HOLD-BACK")
        if "PART-HOLD-BACK" in control
        else None,
        hold_back=_float(control["HOLD-BACK"], "HOLD-BACK") if "HOLD-BACK" in control else None,
        preload_hint=hint,
        ended=ended,
        playlist_type=playlist_type,
    )
