"""townhall.packaging: the programme mix as AAC in fMP4, described by an LL-HLS playlist,
recorded to disk for replay, export and clips.

Pure cores: :mod:`.fmp4`, :mod:`.playlist`, :mod:`.standard`; sync cores: :mod:`.encoder`,
:mod:`.programme`, :mod:`.recorder`, :mod:`.export`; asyncio adapter: :mod:`.store`.
"""

from townhall.packaging.config import PackagingConfig
from townhall.packaging.encoder import AacEncoder
from townhall.packaging.export import export_recording, make_clip
from townhall.packaging.playlist import (
    INIT_URI,
    LIVE_PLAYLIST,
    VOD_PLAYLIST,
    BlockingRequest,
    LivePlaylist,
    Part,
    Readiness,
    Segment,
    part_uri,
    render_vod,
    segment_uri,
)
from townhall.packaging.programme import PackagerEvent, PartReady, ProgrammePackager, SegmentReady
from townhall.packaging.recorder import RecordedSegment, RecoveredRecording, recover
from townhall.packaging.standard import (
    STANDARD_PLAYLIST,
    StandardPlaylist,
    StandardSegment,
    standard_segment_uri,
)
from townhall.packaging.store import ProgrammeStore

__all__ = [
    "INIT_URI",
    "LIVE_PLAYLIST",
    "STANDARD_PLAYLIST",
    "VOD_PLAYLIST",
    "AacEncoder",
    "BlockingRequest",
    "LivePlaylist",
    "PackagerEvent",
    "PackagingConfig",
    "Part",
    "PartReady",
    "ProgrammePackager",
    "ProgrammeStore",
    "Readiness",
    "RecordedSegment",
    "RecoveredRecording",
    "Segment",
    "SegmentReady",
    "StandardPlaylist",
    "StandardSegment",
    "export_recording",
    "make_clip",
    "part_uri",
    "recover",
    "render_vod",
    "segment_uri",
    "standard_segment_uri",
]
