"""Durable recording of a programme on disk, and recovery after a restart or crash (sync I/O).

Layout of a recording directory::

    init.mp4        init section
    seg{msn}.m4s    complete segments, each written to ``*.tmp``, fsynced, then renamed
    index.jsonl     one JSON line per segment, appended after its file is in place
    replay.m3u8     VOD playlist, written when the space ends (or by :func:`recover`)

A crash can leave a ``*.tmp`` file or a truncated last index line; neither is ever listed.
A segment whose file was renamed but whose index line was lost is still recovered: its duration
comes from its own boxes and its PDT is extrapolated from the previous segment.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from townhall.packaging.fmp4 import find_box, fragment_infos, parse_boxes
from townhall.packaging.playlist import INIT_URI, VOD_PLAYLIST, Segment, render_vod, segment_uri

logger = logging.getLogger(__name__)

INDEX_FILE = "index.jsonl"
_SEGMENT_NAME = re.compile(r"seg([0-9]+)\.m4s")


def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` via ``path.tmp`` + rename, so readers never see a partial file.
    With ``fsync``, the file and its directory are flushed to stable storage first."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)  # e.g. ENOSPC: give the space back
        raise
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RecordedSegment:
    """A segment that is durably part of the recording."""

    msn: int
    """Media sequence number."""
    pdt: datetime
    """Wall-clock time of its first sample."""
    base_decode_time: int
    """tfdt of its first fragment, in timescale units."""
    ticks: int
    """Duration in timescale units."""
    timescale: int
    """Media timescale (the sample rate)."""
    size: int
    """File size in bytes."""

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return self.ticks / self.timescale

    @property
    def end_decode_time(self) -> int:
        """tfdt right after this segment."""
        return self.base_decode_time + self.ticks

    @property
    def uri(self) -> str:
        """File name relative to the recording directory."""
        return segment_uri(self.msn)

    def to_segment(self, discontinuity: bool = False) -> Segment:
        """As a playlist segment."""
        return Segment(self.msn, self.duration, self.pdt, self.uri, (), discontinuity)


class Recorder:
    """Appends segments to a recording directory; one writer per directory."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._repair_index()

    def _repair_index(self) -> None:
        """Cut a truncated last line (crash mid-append) so new lines start on a fresh line."""
        path = self.directory / INDEX_FILE
        if not path.exists():
            return
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            logger.warning("truncating partial last line of %s", path)
            with open(path, "r+b") as fh:
                fh.truncate(keep)
                if self.fsync:
                    os.fsync(fh.fileno())

    def write_init(self, data: bytes) -> None:
        """Write init.mp4 (unchanged bytes are not rewritten)."""
        path = self.directory / INIT_URI
        if path.exists() and path.read_bytes() == data:
            return
        write_atomic(path, data, fsync=self.fsync)

    def write_segment(self, seg: RecordedSegment, data: bytes) -> None:
        """Make ``seg`` durable: file first, then its index line."""
        path = self.directory / seg.uri
        if path.exists():
            raise FileExistsError(f"refusing to overwrite recorded segment {path}")
        write_atomic(path, data, fsync=self.fsync)
        line = json.dumps(
            {
                "msn": seg.msn,
                "duration": seg.duration,
                "pdt": seg.pdt.isoformat(),
                "tfdt": seg.base_decode_time,
                "ticks": seg.ticks,
                "timescale": seg.timescale,
                "size": len(data),
            },
            separators=(",", ":"),
        )
        with open(self.directory / INDEX_FILE, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())

    def write_vod(self, segments: list[RecordedSegment], nominal_duration: float) -> str:
        """Write replay.m3u8 for ``segments``; returns its text."""
        text = render_vod(_with_discontinuities(segments), nominal_duration=nominal_duration)
        write_atomic(self.directory / VOD_PLAYLIST, text.encode(), fsync=self.fsync)
        return text


def _with_discontinuities(segments: list[RecordedSegment]) -> list[Segment]:
    out: list[Segment] = []
    prev: RecordedSegment | None = None
    for seg in segments:
        gap = prev is not None and (
            seg.msn != prev.msn + 1 or seg.base_decode_time != prev.end_decode_time
        )
        out.append(seg.to_segment(discontinuity=gap))
        prev = seg
    return out


def read_timescale(directory: Path) -> int:
    """Media timescale from the recording's init.mp4 (mdhd)."""
    boxes = parse_boxes((Path(directory) / INIT_URI).read_bytes())
    mdhd = find_box(boxes, "moov/trak/mdia/mdhd")
    if mdhd is None:
        raise ValueError("init.mp4 has no mdhd")
    version = mdhd.payload[0]
    (timescale,) = struct.unpack_from(">I", mdhd.payload, 20 if version == 1 else 12)
    return int(timescale)


def _read_index(directory: Path) -> dict[int, dict[str, object]]:
    entries: dict[int, dict[str, object]] = {}
    path = directory / INDEX_FILE
    if not path.exists():
        return entries
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                logger.warning("ignoring truncated index line %d in %s", lineno, path)
                continue
            try:
                entry = json.loads(line)
                entries[int(entry["msn"])] = entry
            except (ValueError, KeyError, TypeError):
                logger.warning("ignoring bad index line %d in %s", lineno, path)
    return entries


def scan_recording(directory: Path) -> list[RecordedSegment]:
    """Complete, well-formed segments of a recording, in MSN order (``*.tmp`` never counts)."""
    directory = Path(directory)
    timescale = read_timescale(directory)
    index = _read_index(directory)
    found: list[RecordedSegment] = []
    prev: RecordedSegment | None = None
    files = sorted(
        (int(m.group(1)), p)
        for p in directory.iterdir()
        if (m := _SEGMENT_NAME.fullmatch(p.name)) is not None
    )
    for msn, path in files:
        data = path.read_bytes()
        try:
            infos = fragment_infos(data)
        except ValueError as exc:
            logger.warning("skipping damaged segment %s: %s", path, exc)
            continue
        if not infos:
            continue
        ticks = sum(i.duration for i in infos)
        duration = ticks / timescale
        entry = index.get(msn)
        if entry is not None and entry.get("size") == len(data):
            pdt = datetime.fromisoformat(str(entry["pdt"]))
        elif prev is not None:
            logger.warning("segment %s has no index entry; extrapolating its PDT", path)
            pdt = prev.pdt + timedelta(seconds=prev.duration)
        else:
            logger.warning("segment %s has no index entry; PDT from file mtime", path)
            pdt = datetime.fromtimestamp(path.stat().st_mtime).astimezone() - timedelta(
                seconds=duration
            )
        seg = RecordedSegment(msn, pdt, infos[0].base_decode_time, ticks, timescale, len(data))
        found.append(seg)
        prev = seg
    return found


@dataclass(frozen=True)
class RecoveredRecording:
    """What :func:`recover` found on disk."""

    directory: Path
    """The recording directory."""
    segments: tuple[RecordedSegment, ...]
    """Complete segments, in order."""
    playlist: str
    """The VOD playlist text written to replay.m3u8."""

    @property
    def next_msn(self) -> int:
        """MSN a resumed programme should continue with."""
        return self.segments[-1].msn + 1 if self.segments else 0

    @property
    def next_decode_time(self) -> int:
        """tfdt (samples) a resumed programme should continue with."""
        if not self.segments:
            return 0
        return self.segments[-1].end_decode_time

    @property
    def duration(self) -> float:
        """Total recorded duration in seconds."""
        return sum(s.duration for s in self.segments)


def recover(
    directory: Path | str, *, nominal_duration: float = 2.048, fsync: bool = True
) -> RecoveredRecording:
    """Rebuild replay.m3u8 from the complete segment files of a recording directory."""
    directory = Path(directory)
    if not (directory / INIT_URI).exists():
        raise FileNotFoundError(f"no {INIT_URI} in {directory}: not a recording")
    segments = scan_recording(directory)
    text = Recorder(directory, fsync=fsync).write_vod(segments, nominal_duration)
    logger.info("recovered %d segments from %s", len(segments), directory)
    return RecoveredRecording(directory, tuple(segments), text)
