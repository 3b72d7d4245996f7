"""Packaging configuration: encoder settings and LL-HLS timing, all derived from AAC frames."""

from __future__ import annotations

from dataclasses import dataclass

AAC_FRAME_SAMPLES = 1024
"""Samples per AAC-LC frame; every part and segment is a whole number of these."""


@dataclass(frozen=True)
class PackagingConfig:
    """How the programme mix is encoded, fragmented and described.

    Parts and segments are counted in AAC frames so that they align exactly with the encoder:
    at 48 kHz, 24 frames = 0.512 s per part and 4 parts = 2.048 s per segment.
    """

    part_frames: int = 24
    """AAC frames per part (24 = 0.512 s at 48 kHz)."""
    parts_per_segment: int = 4
    """Parts per segment (4 x 0.512 s = 2.048 s)."""
    bitrate: int = 64000
    """AAC-LC target bit rate in bit/s."""
    sample_rate: int = 48000
    """Sample rate of the mix and of the encoded stream (also the fMP4 media timescale)."""
    window_segments: int = 6
    """Complete segments listed in the live playlist (and kept in the memory ring)."""
    standard_group: int = 2
    """LL-HLS segments per standard-HLS segment (``std.m3u8``): 2 x 2.048 s = 4.096 s."""
    part_hold_back_parts: float = 3.0
    """PART-HOLD-BACK in units of the part target duration (RFC 8216bis: at least 2, SHOULD 3)."""
    fsync: bool = True
    """fsync recorded files and their directory (durability across power loss, not only crashes)."""

    def __post_init__(self) -> None:
        if self.part_frames < 1 or self.parts_per_segment < 1:
            raise ValueError("part_frames and parts_per_segment must be >= 1")
        if self.window_segments < 1:
            raise ValueError("window_segments must be >= 1")
        if self.standard_group < 1:
            raise ValueError("standard_group must be >= 1")
        if self.part_hold_back_parts < 2.0:
            raise ValueError("PART-HOLD-BACK must be at least twice the part target (RFC 8216bis)")
        if self.sample_rate <= 0 or self.bitrate <= 0:
            raise ValueError("sample_rate and bitrate must be positive")

    @property
    def frame_duration(self) -> float:
        """Duration of one AAC frame in seconds."""
        return AAC_FRAME_SAMPLES / self.sample_rate

    @property
    def part_target(self) -> float:
        """Nominal part duration in seconds (EXT-X-PART-INF PART-TARGET)."""
        return self.part_frames * AAC_FRAME_SAMPLES / self.sample_rate

    @property
    def segment_frames(self) -> int:
        """AAC frames per complete segment."""
        return self.part_frames * self.parts_per_segment

    @property
    def segment_duration(self) -> float:
        """Nominal segment duration in seconds."""
        return self.segment_frames * AAC_FRAME_SAMPLES / self.sample_rate

    @property
    def standard_segment_duration(self) -> float:
        """Nominal standard-HLS segment duration in seconds."""
        return self.standard_group * self.segment_duration

    @property
    def part_hold_back(self) -> float:
        """EXT-X-SERVER-CONTROL PART-HOLD-BACK in seconds."""
        return self.part_hold_back_parts * self.part_target
