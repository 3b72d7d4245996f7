"""Programme packager: PCM of the mix in, fMP4 parts and segments out (sync core, no asyncio).

CPU cost is the AAC encoder; an async caller should run :meth:`ProgrammePackager.push` in a
thread (or a dedicated executor) and hand the returned events to the store.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from townhall.packaging.config import AAC_FRAME_SAMPLES, PackagingConfig
from townhall.packaging.encoder import AacEncoder
from townhall.packaging.fmp4 import fragment, init_segment


@dataclass(frozen=True)
class PartReady:
    """A part (one fMP4 fragment) was produced."""

    msn: int
    """Media sequence number of the parent segment."""
    index: int
    """Index of the part in its segment, from 0."""
    data: bytes
    """The fragment bytes (moof + mdat)."""
    duration: float
    """Duration in seconds."""
    pdt: datetime
    """Wall-clock time of the part's first sample (UTC)."""
    segment_pdt: datetime
    """Wall-clock time of the parent segment's first sample (UTC)."""
    base_decode_time: int
    """tfdt of the fragment, in samples."""
    independent: bool = True
    """Starts with an independently decodable frame (always, for AAC)."""


@dataclass(frozen=True)
class SegmentReady:
    """A segment was completed (emitted right after its last PartReady)."""

    msn: int
    """Media sequence number."""
    data: bytes
    """The segment bytes: concatenation of its parts."""
    duration: float
    """Duration in seconds."""
    pdt: datetime
    """Wall-clock time of its first sample (UTC)."""
    part_count: int
    """Number of parts it is made of."""
    base_decode_time: int
    """tfdt of its first fragment, in samples."""


PackagerEvent = PartReady | SegmentReady


class ProgrammePackager:
    """Encodes the programme and cuts it into parts and segments aligned on AAC frames.

    ``push`` takes the PCM and the wall time (seconds since the epoch) of its first sample;
    the PDT of each part/segment is derived from the wall time of the first sample it decodes to
    (accounting for the encoder delay). Silence is a valid programme: feed zeros.
    """

    def __init__(
        self,
        config: PackagingConfig | None = None,
        *,
        first_msn: int = 0,
        first_decode_time: int = 0,
    ) -> None:
        self.config = config or PackagingConfig()
        self._encoder = AacEncoder(self.config.sample_rate, self.config.bitrate)
        self.init_segment: bytes = init_segment(
            self._encoder.audio_specific_config, self.config.sample_rate, 1, self.config.bitrate
        )
        """Init section (EXT-X-MAP), available before any audio."""
        self._first_decode_time = first_decode_time
        self._msn = first_msn
        self._part_index = 0
        self._frames: list[bytes] = []
        self._segment_parts: list[bytes] = []
        self._segment_pdt: datetime | None = None
        self._segment_decode_time = first_decode_time
        self._decode_time = first_decode_time  # tfdt of the next fragment
        self._frames_out = 0  # encoded frames emitted into fragments so far
        self._samples_in = 0
        self._anchors: deque[tuple[int, float]] = deque()
        self._finished = False

    @property
    def next_msn(self) -> int:
        """MSN of the segment being built."""
        return self._msn

    @property
    def decode_time(self) -> int:
        """tfdt (in samples) of the next fragment."""
        return self._decode_time

    def push(self, pcm: npt.NDArray[np.int16], wall_time: float) -> list[PackagerEvent]:
        """Encode ``pcm`` (mono int16 at the configured rate) whose first sample was captured at
        ``wall_time``; returns the parts/segments that became complete, in order."""
        if self._finished:
            raise RuntimeError("packager finished")
        samples = np.asarray(pcm).reshape(-1)
        if samples.size:
            self._anchors.append((self._samples_in, wall_time))
            self._samples_in += samples.size
        return self._take(self._encoder.encode(samples))

    def finish(self) -> list[PackagerEvent]:
        """Drain the encoder and emit the trailing (possibly short) part and segment."""
        if self._finished:
            return []
        events = self._take(self._encoder.flush())
        self._finished = True
        if self._frames:
            events.extend(self._emit_part())
        if self._segment_parts:
            events.append(self._emit_segment())
        return events

    def _take(self, frames: list[bytes]) -> list[PackagerEvent]:
        events: list[PackagerEvent] = []
        for f in frames:
            self._frames.append(f)
            if len(self._frames) == self.config.part_frames:
                events.extend(self._emit_part())
        return events

    def _wall_at(self, frame_index: int) -> datetime:
        """Wall-clock time of the input sample decoded at output frame ``frame_index``."""
        sample = frame_index * AAC_FRAME_SAMPLES - self._encoder.priming_samples
        while len(self._anchors) > 1 and self._anchors[1][0] <= sample:
            self._anchors.popleft()
        start, wall = self._anchors[0] if self._anchors else (0, 0.0)
        ts = wall + (sample - start) / self.config.sample_rate
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ts)

    def _emit_part(self) -> list[PackagerEvent]:
        cfg = self.config
        frames, self._frames = self._frames, []
        pdt = self._wall_at(self._frames_out)
        if self._part_index == 0:
            self._segment_pdt = pdt
            self._segment_decode_time = self._decode_time
        seq = self._msn * cfg.parts_per_segment + self._part_index + 1
        data = fragment(seq, self._decode_time, frames)
        assert self._segment_pdt is not None
        part = PartReady(
            msn=self._msn,
            index=self._part_index,
            data=data,
            duration=len(frames) * AAC_FRAME_SAMPLES / cfg.sample_rate,
            pdt=pdt,
            segment_pdt=self._segment_pdt,
            base_decode_time=self._decode_time,
        )
        self._decode_time += len(frames) * AAC_FRAME_SAMPLES
        self._frames_out += len(frames)
        self._segment_parts.append(data)
        self._part_index += 1
        events: list[PackagerEvent] = [part]
        if self._part_index == cfg.parts_per_segment:
            events.append(self._emit_segment())
        return events

    def _emit_segment(self) -> SegmentReady:
        assert self._segment_pdt is not None
        seg = SegmentReady(
            msn=self._msn,
            data=b"".join(self._segment_parts),
            duration=(self._decode_time - self._segment_decode_time) / self.config.sample_rate,
            pdt=self._segment_pdt,
            part_count=len(self._segment_parts),
            base_decode_time=self._segment_decode_time,
        )
        self._msn += 1
        self._part_index = 0
        self._segment_parts = []
        self._segment_pdt = None
        return seg
