"""A space's stage: one aiortc peer connection per speaker (WHIP, RFC 9725).

The HTTP layer calls :meth:`StageRoom.accept_offer` for ``POST`` (answer with 201,
``Location`` naming the session, body ``WhipSession.answer_sdp``) and
:meth:`StageRoom.close_session` for ``DELETE``. ``PATCH`` (trickle ICE / ICE
restart) is not supported: aiortc does not trickle, every candidate is in the answer
because gathering completes before it is returned, so the HTTP layer answers 405.

Per session:

- inbound: the speaker's audio track is read by ``_run_receive``; aiortc decodes
  Opus to stereo s16 at 48 kHz in its decoder thread; the task downmixes to int16
  mono, re-cuts to 960-sample frames and calls ``on_audio(speaker_id, pcm, pts)``
  on the event loop (pts: RTP timestamp in samples, counted from the stream's first
  packet).
- outbound: a :class:`ReturnTrack` on the same transceiver (the answer is
  ``sendrecv``) carries what the mixer passes to :meth:`StageRoom.send_return`.
- lifecycle: ``on_join(speaker_id)`` when a speaker's session is accepted and
  ``on_leave(speaker_id)`` exactly once when it ends: connection failed or closed,
  track ended, DELETE, :meth:`disconnect`, connect timeout, :meth:`close`. A new
  offer from a speaker who already has a session replaces it without a
  leave/join pair.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

from .candidates import announced_gathering, candidate_addresses
from .errors import WhipError
from .latency import tune_audio_receivers
from .offer import validate_offer
from .pcm import SAMPLE_RATE, FrameChunker, Pcm, downmix_to_mono
from .return_track import ReturnTrack
from .settings import RtcSettings, rtc_configuration

__all__ = ["AudioCallback", "SessionStats", "StageRoom", "WhipSession"]

logger = logging.getLogger(__name__)

AudioCallback = Callable[[str, np.ndarray, int], None]
"""``(speaker_id, pcm, pts)``: int16 mono, 960 samples at 48 kHz, RTP timestamp in samples."""


@dataclass(frozen=True)
class WhipSession:
    """An accepted WHIP offer."""

    session_id: str
    """Opaque, unguessable id for the ``Location`` URL (and DELETE)."""
    speaker_id: str
    """The speaker who published."""
    answer_sdp: str
    """The SDP answer, with every ICE candidate in it (no trickle)."""


@dataclass(frozen=True)
class SessionStats:
    """A snapshot of one session's counters."""

    session_id: str
    """The session."""
    connection_state: str
    """aiortc's ``connectionState``: new, connecting, connected, failed, closed."""
    connect_seconds: float | None
    """Seconds from the accepted offer to ``connected``; ``None`` until then."""
    frames_received: int
    """20 ms frames passed to ``on_audio``."""
    return_frames_pushed: int
    """Frames the mixer passed to ``send_return``."""
    return_frames_dropped: int
    """Return frames dropped because the mixer ran ahead of the track."""
    return_frames_silent: int
    """Return frames sent as silence because none was queued."""


@dataclass(eq=False)
class _Session:
    session_id: str
    speaker_id: str
    pc: RTCPeerConnection
    started_at: float
    return_track: ReturnTrack | None = None
    connected_at: float | None = None
    frames_received: int = 0
    ended: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class StageRoom:
    """The WebRTC side of one live space's stage."""

    def __init__(
        self,
        space_id: str,
        settings: RtcSettings,
        on_audio: AudioCallback,
        on_join: Callable[[str], None] | None = None,
        on_leave: Callable[[str], None] | None = None,
    ) -> None:
        self.space_id = space_id
        self.settings = settings
        self._on_audio = on_audio
        self._on_join = on_join
        self._on_leave = on_leave
        self._sessions: dict[str, _Session] = {}
        self._by_speaker: dict[str, _Session] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- the HTTP layer's calls -------------------------------------------------

    async def accept_offer(self, speaker_id: str, offer_sdp: str) -> WhipSession:
        """Validate the offer, set up a peer connection, return the answer.

        The offer is checked before any peer connection exists; every failure after
        that closes the peer connection before raising :class:`WhipError`.
        """
        self._check_open()
        offer = validate_offer(offer_sdp)
        loop = asyncio.get_running_loop()
        pc = RTCPeerConnection(rtc_configuration(self.settings))
        session = _Session(secrets.token_urlsafe(16), speaker_id, pc, loop.time())
        try:
            self._wire(session)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            if offer.wants_return:
                session.return_track = ReturnTrack()
                pc.addTrack(session.return_track)
            answer = await pc.createAnswer()
            with announced_gathering(self.settings.announced_address):
                await pc.setLocalDescription(answer)
            self._check_open()
            answer_sdp: str = pc.localDescription.sdp
            if not candidate_addresses(answer_sdp):
                raise WhipError(
                    500,
                    "ICE gathering produced no candidate (is the announced address "
                    f"{self.settings.announced_address} an address of this machine?)",
                )
        except BaseException as exc:
            await self._discard(session)
            if isinstance(exc, WhipError | asyncio.CancelledError) or not isinstance(
                exc, Exception
            ):
                raise
            status = 400 if isinstance(exc, ValueError) else 500
            logger.warning("stage %s: offer from %s failed: %r", self.space_id, speaker_id, exc)
            raise WhipError(status, f"could not negotiate the offer: {exc}") from exc

        previous = self._by_speaker.get(speaker_id)
        self._sessions[session.session_id] = session
        self._by_speaker[speaker_id] = session
        self._spawn(session, self._run_connect_watchdog(session))
        logger.info(
            "stage %s: speaker %s session %s accepted%s",
            self.space_id,
            speaker_id,
            session.session_id,
            f" (replaces {previous.session_id})" if previous else "",
        )
        if previous is not None:
            await self._end(previous, "replaced by a new offer", notify=False)
        else:
            self._notify(self._on_join, speaker_id)
        return WhipSession(session.session_id, speaker_id, answer_sdp)

    async def close_session(self, session_id: str, speaker_id: str | None = None) -> bool:
        """End a session (WHIP DELETE). False if unknown; 403 if it is someone else's."""
        session = self._sessions.get(session_id)
        if session is None:
            return False
        if speaker_id is not None and session.speaker_id != speaker_id:
            raise WhipError(403, "this WHIP session belongs to another speaker")
        await self._end(session, "closed by the speaker")
        return True

    async def disconnect(self, speaker_id: str) -> None:
        """Close a speaker's session at once (removed or blocked by the host)."""
        session = self._by_speaker.get(speaker_id)
        if session is not None:
            await self._end(session, "disconnected by the host")

    # -- the mixer's calls ------------------------------------------------------

    def send_return(self, speaker_id: str, pcm: np.ndarray) -> None:
        """Queue 20 ms of N-1 audio (int16 mono, 960 samples) for a speaker.

        Ignored for a speaker without a session, or whose offer was ``sendonly``.
        """
        session = self._by_speaker.get(speaker_id)
        if session is not None and session.return_track is not None:
            session.return_track.push(pcm)

    def speakers(self) -> frozenset[str]:
        """Speakers with a session."""
        return frozenset(self._by_speaker)

    def session_count(self) -> int:
        """Live sessions (at most one per speaker)."""
        return len(self._sessions)

    def session_stats(self, speaker_id: str) -> SessionStats | None:
        """Counters for a speaker's session, or ``None`` without one."""
        session = self._by_speaker.get(speaker_id)
        if session is None:
            return None
        track = session.return_track
        return SessionStats(
            session_id=session.session_id,
            connection_state=str(session.pc.connectionState),
            connect_seconds=(
                None if session.connected_at is None else session.connected_at - session.started_at
            ),
            frames_received=session.frames_received,
            return_frames_pushed=track.frames_pushed if track else 0,
            return_frames_dropped=track.frames_dropped if track else 0,
            return_frames_silent=track.frames_silent if track else 0,
        )

    async def close(self) -> None:
        """End every session (each speaker gets ``on_leave``); refuse new offers."""
        self._closed = True
        await asyncio.gather(*(self._end(s, "stage closed") for s in list(self._sessions.values())))
        background = [t for t in self._background if t is not asyncio.current_task()]
        if background:
            await asyncio.gather(*background, return_exceptions=True)

    # -- internals --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise WhipError(409, f"the stage of space {self.space_id} is closed")

    def _wire(self, session: _Session) -> None:
        pc = session.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            tune_audio_receivers(pc)
            if track.kind == "audio" and not session.ended:
                self._spawn(session, self._run_receive(session, track))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "connected" and session.connected_at is None:
                session.connected_at = asyncio.get_running_loop().time()
                logger.info(
                    "stage %s: speaker %s connected in %.3f s",
                    self.space_id,
                    session.speaker_id,
                    session.connected_at - session.started_at,
                )
            elif state in ("failed", "closed") and not session.ended:
                self._spawn_background(self._end(session, f"connection {state}"))

    async def _run_receive(self, session: _Session, track: MediaStreamTrack) -> None:
        chunker = FrameChunker()
        resampler: AudioResampler | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            if not isinstance(frame, AudioFrame):
                continue
            if frame.format.name != "s16" or frame.sample_rate != SAMPLE_RATE:
                resampler = resampler or AudioResampler("s16", "mono", SAMPLE_RATE)
                frames = resampler.resample(frame)
            else:
                frames = [frame]
            for f in frames:
                mono = downmix_to_mono(f.to_ndarray(), len(f.layout.channels))
                for pcm, pts in chunker.push(mono, int(f.pts or 0)):
                    if session.ended:  # no audio after on_leave
                        return
                    session.frames_received += 1
                    self._deliver(session.speaker_id, pcm, pts)
        if not session.ended:
            await self._end(session, "audio track ended")

    def _deliver(self, speaker_id: str, pcm: Pcm, pts: int) -> None:
        try:
            self._on_audio(speaker_id, pcm, pts)
        except Exception:
            logger.exception("stage %s: on_audio failed for %s", self.space_id, speaker_id)

    async def _run_connect_watchdog(self, session: _Session) -> None:
        await asyncio.sleep(self.settings.connect_timeout)
        if session.connected_at is None and not session.ended:
            await self._end(session, f"not connected after {self.settings.connect_timeout} s")

    async def _end(self, session: _Session, reason: str, notify: bool = True) -> None:
        """Remove a session, ``on_leave`` if it was the speaker's current one, close it."""
        if session.ended:
            return
        session.ended = True
        self._sessions.pop(session.session_id, None)
        current = self._by_speaker.get(session.speaker_id) is session
        if current:
            del self._by_speaker[session.speaker_id]
        logger.info(
            "stage %s: speaker %s session %s ended: %s",
            self.space_id,
            session.speaker_id,
            session.session_id,
            reason,
        )
        if current and notify:
            self._notify(self._on_leave, session.speaker_id)  # before the slow part
        await self._discard(session)

    async def _discard(self, session: _Session) -> None:
        session.ended = True
        if session.return_track is not None:
            session.return_track.stop()
        me = asyncio.current_task()
        others = [t for t in session.tasks if t is not me]
        for task in others:
            task.cancel()
        await session.pc.close()
        if others:
            await asyncio.gather(*others, return_exceptions=True)

    def _notify(self, callback: Callable[[str], None] | None, speaker_id: str) -> None:
        if callback is None:
            return
        try:
            callback(speaker_id)
        except Exception:
            logger.exception("stage %s: join/leave callback failed", self.space_id)

    def _spawn(self, session: _Session, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)

    def _spawn_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
