"""Programme store: the asyncio side of packaging.

Holds the live playlist, a memory ring of recent parts and segments and the init section; records
every segment to disk (off the event loop) as it completes; lets HTTP handlers wait for a part
(blocking playlist reload) without polling. Beside the LL-HLS playlist it keeps the standard-HLS
one (``std.m3u8``, longer segments made of whole LL-HLS segments) and a ring of its segments.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from townhall.packaging.config import PackagingConfig
from townhall.packaging.playlist import (
    VOD_PLAYLIST,
    BlockingRequest,
    LivePlaylist,
    Part,
    part_uri,
    segment_uri,
)
from townhall.packaging.programme import PackagerEvent, PartReady, SegmentReady
from townhall.packaging.recorder import (
    RecordedSegment,
    Recorder,
    RecoveredRecording,
    read_timescale,
    recover,
)
from townhall.packaging.standard import StandardPlaylist, StandardSegment

logger = logging.getLogger(__name__)


class ProgrammeStore:
    """Live state and recording of one space's programme.

    Create it when the host starts (the playlist exists before anyone speaks), feed it the
    packager's events with :meth:`publish`, and call :meth:`finish` when the space ends.
    Pass ``resume`` (from :meth:`recover`) to continue a recording after a restart;
    ``first_msn``/``discontinuity_sequence`` (failover: see ``docs/failover.md``) override
    where the live playlist continues. With ``write_behind`` :meth:`publish` returns before
    the disk write (a slow disk never holds the caller's clock; :meth:`finish` waits for it).
    A failed write (disk full, I/O error) is logged, kept in :attr:`recording_error` and
    leaves that segment out of the recording; the live programme goes on.
    """

    def __init__(
        self,
        directory: Path | str,
        init_segment: bytes,
        config: PackagingConfig | None = None,
        *,
        resume: RecoveredRecording | None = None,
        first_msn: int | None = None,
        discontinuity_sequence: int | None = None,
        write_behind: bool = False,
    ) -> None:
        self.config = config or PackagingConfig()
        self.directory = Path(directory)
        self.init_segment = init_segment
        self._recorder = Recorder(self.directory, fsync=self.config.fsync)
        self._recorder.write_init(init_segment)
        self._recorded: list[RecordedSegment] = list(resume.segments) if resume else []
        if first_msn is None:
            first_msn = resume.next_msn if resume else 0
        if resume is None and any(self.directory.glob("seg*.m4s")):
            raise FileExistsError(f"{self.directory} already holds a recording; pass resume=")
        self.playlist = LivePlaylist(
            part_target=self.config.part_target,
            parts_per_segment=self.config.parts_per_segment,
            nominal_segment_duration=self.config.segment_duration,
            window_segments=self.config.window_segments,
            part_hold_back=self.config.part_hold_back,
            first_msn=first_msn,
            discontinuity_sequence=discontinuity_sequence,
        )
        self.standard = StandardPlaylist(
            group=self.config.standard_group,
            nominal_segment_duration=self.config.segment_duration,
            first_msn=first_msn,
            discontinuity_sequence=discontinuity_sequence,
        )
        """The standard-HLS playlist (``std.m3u8``), fed the same segments."""
        self._timescale = read_timescale(self.directory)
        self._parts: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._segments: OrderedDict[int, bytes] = OrderedDict()
        self._std_members: list[bytes] = []  # bytes of the open standard segment's members
        self._std_segments: OrderedDict[int, bytes] = OrderedDict()
        self._changed = asyncio.Condition()
        self._disk_lock = asyncio.Lock()
        self._ended = False
        self._text_cache: str | None = None
        self._std_text_cache: str | None = None
        self._write_behind = write_behind
        self._disk_queue: asyncio.Queue[tuple[RecordedSegment, bytes]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.recording_error: str | None = None
        """Why the last segment could not be recorded (None while recording works)."""

    # -- feeding -------------------------------------------------------------------------------

    async def publish(self, events: Iterable[PackagerEvent]) -> None:
        """Apply packager events: playlist and memory first (waiters wake at once), then the
        disk write of completed segments in a worker thread, in order."""
        if self._ended:
            raise RuntimeError("programme already finished")
        to_record: list[tuple[RecordedSegment, bytes]] = []
        for event in events:
            if isinstance(event, PartReady):
                self._apply_part(event)
            else:
                to_record.append((self._apply_segment(event), event.data))
        self._text_cache = None
        async with self._changed:
            self._changed.notify_all()
        if self._write_behind:
            for item in to_record:
                self._disk_queue.put_nowait(item)
            if to_record and self._writer is None:
                self._writer = asyncio.create_task(self._write_queued(), name="recorder")
            return
        for seg, data in to_record:
            await self._record(seg, data)

    async def _write_queued(self) -> None:
        while True:
            seg, data = await self._disk_queue.get()
            try:
                await self._record(seg, data)
            finally:
                self._disk_queue.task_done()

    async def _record(self, seg: RecordedSegment, data: bytes) -> None:
        async with self._disk_lock:
            try:
                await asyncio.to_thread(self._recorder.write_segment, seg, data)
            except OSError as exc:
                if self.recording_error is None:
                    logger.error(
                        "recording of %s failed at segment %d (%s); live audio goes on, "
                        "the recording misses segments until writes succeed again",
                        self.directory,
                        seg.msn,
                        exc,
                    )
                self.recording_error = f"segment {seg.msn}: {exc}"
                return
            if self.recording_error is not None:
                logger.warning(
                    "recording of %s works again from segment %d", self.directory, seg.msn
                )
                self.recording_error = None
            self._recorded.append(seg)

    def _apply_part(self, event: PartReady) -> None:
        part = Part(
            event.msn,
            event.index,
            event.duration,
            event.independent,
            part_uri(event.msn, event.index),
        )
        self.playlist.add_part(part, event.segment_pdt)
        self._parts[(event.msn, event.index)] = event.data
        oldest = event.msn - self.config.window_segments
        while self._parts and next(iter(self._parts))[0] < oldest:
            self._parts.popitem(last=False)

    def _apply_segment(self, event: SegmentReady) -> RecordedSegment:
        segment = self.playlist.complete_segment(event.msn, segment_uri(event.msn))
        self._segments[event.msn] = event.data
        while len(self._segments) > self.config.window_segments:
            self._segments.popitem(last=False)
        self._std_members.append(event.data)
        self._keep_standard(self.standard.add(segment))
        ticks = round(event.duration * self._timescale)
        return RecordedSegment(
            event.msn, event.pdt, event.base_decode_time, ticks, self._timescale, len(event.data)
        )

    def _keep_standard(self, std: StandardSegment | None) -> None:
        """Keep a just completed standard segment's bytes (its members', concatenated)."""
        if std is None:
            return
        self._std_segments[std.seq] = b"".join(self._std_members)
        self._std_members = []
        while len(self._std_segments) > self.standard.window:
            self._std_segments.popitem(last=False)
        self._std_text_cache = None

    async def finish(self) -> None:
        """Mark the programme ended (live playlists get EXT-X-ENDLIST, the trailing standard
        segment is closed, waiters wake) and write the VOD playlist ``replay.m3u8`` once every
        pending segment is on disk.
        Flush the packager (``ProgrammePackager.finish``) and publish its events first."""
        if self._ended:
            return
        self._ended = True
        self._keep_standard(self.standard.finish())
        self._text_cache = None
        self._std_text_cache = None
        async with self._changed:
            self._changed.notify_all()
        if self._writer is not None:
            await self._disk_queue.join()
            self._writer.cancel()
            self._writer = None
        async with self._disk_lock:
            try:
                await asyncio.to_thread(
                    self._recorder.write_vod, list(self._recorded), self.config.segment_duration
                )
            except OSError as exc:
                logger.error("could not write the replay playlist of %s: %s", self.directory, exc)
                self.recording_error = f"replay playlist: {exc}"
        logger.info("programme in %s finished: %d segments", self.directory, len(self._recorded))

    # -- reading -------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """Whether :meth:`finish` was called (the live playlist is final)."""
        return self._ended

    def playlist_text(self) -> str:
        """Current live playlist (``live.m3u8``)."""
        if self._text_cache is None:
            self._text_cache = self.playlist.render(ended=self._ended)
        return self._text_cache

    def standard_playlist_text(self) -> str:
        """Current standard-HLS playlist (``std.m3u8``)."""
        if self._std_text_cache is None:
            self._std_text_cache = self.standard.render(ended=self._ended)
        return self._std_text_cache

    def vod_text(self) -> str | None:
        """``replay.m3u8`` once the programme has finished, else None."""
        path = self.directory / VOD_PLAYLIST
        return path.read_text() if self._ended and path.exists() else None

    def check_request(self, msn: str | None, part: str | None) -> BlockingRequest:
        """Validate raw ``_HLS_msn``/``_HLS_part`` values (see ``LivePlaylist.check_request``)."""
        return self.playlist.check_request(msn, part)

    @property
    def blocking_timeout(self) -> float:
        """Upper bound for holding a blocking reload (3 x target duration); then answer 503."""
        return self.playlist.blocking_timeout

    def has_part(self, msn: int, part: int | None) -> bool:
        """Whether the part (or, with ``part=None``, the whole segment) is available."""
        if part is None:
            return self.playlist.has_segment(msn)
        return self.playlist.has_part(msn, part)

    async def wait_for_part(self, msn: int, part: int | None, timeout: float) -> bool:
        """Wait until part ``part`` of segment ``msn`` (whole segment if None) is in the playlist
        or the programme has ended; False on timeout. Validate the request first with
        :meth:`check_request` (and cap ``timeout`` at :attr:`blocking_timeout`)."""

        def ready() -> bool:
            return self._ended or self.has_part(msn, part)

        if ready():
            return True
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(ready)
        except TimeoutError:
            return False
        return True

    def get_init(self) -> bytes:
        """``init.mp4``."""
        return self.init_segment

    def get_part(self, msn: int, idx: int) -> bytes | None:
        """A recent part from memory; None if unknown, not yet produced or expired."""
        return self._parts.get((msn, idx))

    def get_segment(self, msn: int) -> bytes | None:
        """A complete segment from memory, else from the recording on disk (small sync read)."""
        data = self._segments.get(msn)
        if data is not None:
            return data
        if msn < 0 or not self.playlist.has_segment(msn):
            return None
        path = self.directory / segment_uri(msn)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def get_standard_segment(self, seq: int) -> bytes | None:
        """A complete standard segment from memory, else rebuilt from its members (memory or
        the recording on disk); None if it is not complete or a member is missing."""
        data = self._std_segments.get(seq)
        if data is not None:
            return data
        members = self.standard.members(seq)
        if members is None:
            return None
        chunks: list[bytes] = []
        for msn in members:
            chunk = self.get_segment(msn)
            if chunk is None:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    @classmethod
    def recover(
        cls, directory: Path | str, config: PackagingConfig | None = None
    ) -> RecoveredRecording:
        """Rebuild ``replay.m3u8`` from the complete segments on disk (after a restart/crash)."""
        cfg = config or PackagingConfig()
        return recover(directory, nominal_duration=cfg.segment_duration, fsync=cfg.fsync)
