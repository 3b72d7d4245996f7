"""Export a recording to one ``.m4a`` and cut short clips (PyAV remux, no re-encoding)."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Protocol

import av

from townhall.packaging.playlist import INIT_URI
from townhall.packaging.recorder import RecordedSegment, read_timescale, scan_recording

logger = logging.getLogger(__name__)


class HasDirectory(Protocol):
    """Anything exposing its recording directory (e.g. ``ProgrammeStore``)."""

    @property
    def directory(self) -> Path:
        """The recording directory."""
        ...


Source = Path | str | HasDirectory


def _directory(source: Source) -> Path:
    if isinstance(source, str | os.PathLike):
        return Path(source)
    return Path(source.directory)


def _remux(
    directory: Path,
    segments: list[RecordedSegment],
    out_path: Path,
    start_tick: int | None = None,
    end_tick: int | None = None,
) -> None:
    """Remux init + ``segments`` into a plain faststart MP4 keeping frames whose decode time is in
    [start_tick, end_tick), with timestamps shifted to start at 0."""
    if not segments:
        raise ValueError("nothing recorded in that range")
    buf = io.BytesIO()
    buf.write((directory / INIT_URI).read_bytes())
    for seg in segments:
        buf.write((directory / seg.uri).read_bytes())
    buf.seek(0)
    tmp = out_path.with_name(out_path.name + ".tmp")
    written = 0
    with av.open(buf, mode="r", format="mp4") as src:
        in_stream = src.streams.audio[0]
        with av.open(str(tmp), mode="w", format="ipod", options={"movflags": "+faststart"}) as dst:
            out_stream = dst.add_stream_from_template(in_stream)
            origin: int | None = None
            for packet in src.demux(in_stream):
                if packet.dts is None or packet.size == 0:
                    continue
                tick = int(packet.dts)
                if start_tick is not None and tick < start_tick:
                    continue
                if end_tick is not None and tick >= end_tick:
                    continue
                if origin is None:
                    origin = tick
                packet.dts = tick - origin
                packet.pts = tick - origin
                packet.stream = out_stream
                dst.mux(packet)
                written += 1
    if written == 0:
        tmp.unlink(missing_ok=True)
        raise ValueError("nothing recorded in that range")
    os.replace(tmp, out_path)
    logger.info("wrote %s (%d frames)", out_path, written)


def export_recording(source: Source, out_path: Path | str) -> Path:
    """Write the whole recording (every complete segment) as one ``.m4a``."""
    directory = _directory(source)
    out = Path(out_path)
    _remux(directory, scan_recording(directory), out)
    return out


def make_clip(
    source: Source,
    out_path: Path | str,
    *,
    seconds: float | None = 30.0,
    start: float | None = None,
    end: float | None = None,
) -> Path:
    """Write a small ``.m4a`` clip: the last ``seconds`` of the recording, or the range
    [``start``, ``end``) in seconds from the start of the recording (``end`` None = to the end).
    Only complete (recorded) segments are used; cuts fall on AAC frame boundaries."""
    directory = _directory(source)
    out = Path(out_path)
    segments = scan_recording(directory)
    if not segments:
        raise ValueError("nothing recorded yet")
    timescale = read_timescale(directory)
    origin = segments[0].base_decode_time
    total = segments[-1].end_decode_time - origin
    if start is None and end is None:
        if seconds is None or seconds <= 0:
            raise ValueError("seconds must be positive")
        lo, hi = max(0, total - round(seconds * timescale)), total
    else:
        lo = round((start or 0.0) * timescale)
        hi = total if end is None else min(total, round(end * timescale))
        if lo < 0 or hi <= lo:
            raise ValueError("empty or negative range")
    chosen = [
        s for s in segments if s.end_decode_time - origin > lo and s.base_decode_time - origin < hi
    ]
    _remux(directory, chosen, out, origin + lo, origin + hi)
    return out
