"""The media names the origin serves; anything else is refused before any file access."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

MAX_INDEX = 10**9

_NAME = re.compile(
    r"^(?:(?P<live>live\.m3u8)|(?P<replay>replay\.m3u8)|(?P<init>init\.mp4)"
    r"|seg(?P<seg>[0-9]{1,10})\.m4s|part(?P<pmsn>[0-9]{1,10})\.(?P<pidx>[0-9]{1,3})\.m4s"
    r"|(?P<standard>std\.m3u8)|std(?P<std>[0-9]{1,10})\.m4s)$"
)

Kind = Literal["live", "replay", "init", "segment", "part", "standard", "standard_segment"]


@dataclass(frozen=True)
class MediaName:
    """A parsed media file name."""

    kind: Kind
    msn: int = -1
    """Segment or part MSN; for a standard segment, its sequence number."""
    part: int = -1


def parse_media_name(name: str) -> MediaName | None:
    """Parse ``live.m3u8``, ``replay.m3u8``, ``init.mp4``, ``seg12.m4s``, ``part12.3.m4s``,
    and the standard-HLS ``std.m3u8`` and ``std6.m4s``."""
    m = _NAME.match(name)
    if m is None:
        return None
    if m.group("live"):
        return MediaName("live")
    if m.group("standard"):
        return MediaName("standard")
    if m.group("std") is not None:
        seq = int(m.group("std"))
        return MediaName("standard_segment", seq) if seq < MAX_INDEX else None
    if m.group("replay"):
        return MediaName("replay")
    if m.group("init"):
        return MediaName("init")
    if m.group("seg") is not None:
        msn = int(m.group("seg"))
        return MediaName("segment", msn) if msn < MAX_INDEX else None
    msn, idx = int(m.group("pmsn")), int(m.group("pidx"))
    return MediaName("part", msn, idx) if msn < MAX_INDEX else None
