"""WHIP client (RFC 9725), used by ``townhall speak`` and the tests.

``publish`` sends one SDP offer (every candidate in it: aiortc gathers before the
offer exists, so there is no trickle and no PATCH), expects ``201 Created`` with a
``Location``, and applies the answer. ``close`` sends ``DELETE`` to that Location.
The server's return track (what the speaker hears) is recorded to a WAV file with
:meth:`WhipClient.record_return`, handed to ``on_return``, or read and discarded.

The track is sent as Opus mono at ``bitrate`` (40 kb/s by default, see
:class:`MonoOpusTrack`) rather than aiortc's fixed 96 kb/s stereo.

The HTTP client ignores proxy environment variables (``trust_env=False``): signalling
goes exactly where the URL says.

With ``reconnect=True`` the client keeps itself on the stage: when the connection fails, or
no RTP arrived from the server for ``silence_timeout`` seconds (the stage sends its return
continuously, so silence means the media node is gone: a dead origin is noticed long before
ICE consent would fail), it re-POSTs a fresh offer to the same WHIP URL with exponential
backoff (any node forwards it to the space's current origin). A 4xx answer (removed, blocked,
ended) stops it for good; so does ``reconnect_for`` seconds without success. After a
reconnection the return is drained, not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import httpx
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from .candidates import announced_gathering, strip_mdns_candidates
from .encoded import SPEAKER_BITRATE, MonoOpusTrack
from .errors import WhipError
from .latency import tune_audio_receivers
from .settings import RtcSettings, rtc_configuration
from .wav import WavRecorder

__all__ = ["WhipClient"]

from ..tasks import stop_task

logger = logging.getLogger(__name__)


class WhipClient:
    """Publishes one audio track to a WHIP endpoint and receives the stage's return."""

    def __init__(
        self,
        whip_url: str,
        token: str,
        settings: RtcSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        http_timeout: float = 10.0,
        bitrate: int | None = SPEAKER_BITRATE,
        reconnect: bool = False,
        silence_timeout: float = 2.0,
        reconnect_for: float = 60.0,
    ) -> None:
        self.whip_url = whip_url
        self.settings = settings
        self.bitrate = bitrate
        """Opus mono bitrate the client encodes at; ``None`` leaves it to aiortc
        (96 kb/s stereo)."""
        self.on_return: Callable[[MediaStreamTrack], None] | None = None
        """If set (before :meth:`publish`), called with the server's track, which the
        callee then owns and must read; excludes :meth:`record_return`."""
        self.location: str | None = None
        """The session URL from the 201 response."""
        self.recorder: WavRecorder | None = None
        self._headers = {"Authorization": f"Bearer {token}"}
        self._http = httpx.AsyncClient(transport=transport, timeout=http_timeout, trust_env=False)
        self._pc: RTCPeerConnection | None = None
        self._return_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._failed = asyncio.Event()  # this connection failed or closed
        self._ended = asyncio.Event()  # for good (after giving up, with ``reconnect``)
        self.reconnect = reconnect
        """Reconnect by itself after a failure (see the module docstring)."""
        self.silence_timeout = silence_timeout
        self.reconnect_for = reconnect_for
        self.reconnects = 0
        """Successful reconnections so far."""
        self._track: MediaStreamTrack | None = None
        self._relay = MediaRelay()  # a closed connection stops its track: send copies
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def connection_state(self) -> str:
        """aiortc's ``connectionState`` ("new" before :meth:`publish`)."""
        return "new" if self._pc is None else str(self._pc.connectionState)

    def record_return(self, path: str) -> None:
        """Write the server's return audio to ``path`` (WAV, mono s16 48 kHz)."""
        if self._pc is not None:
            raise RuntimeError("record_return must be called before publish")
        self.recorder = WavRecorder(path)

    async def publish(self, track: MediaStreamTrack) -> None:
        """Offer ``track`` (sendrecv), POST it, apply the answer. Raises :class:`WhipError`."""
        if self._pc is not None:
            raise RuntimeError("publish may be called once per WhipClient")
        if track.kind != "audio":
            raise ValueError("the stage takes one audio track")
        if self.on_return is not None and self.recorder is not None:
            raise RuntimeError("use either on_return or record_return, not both")
        self._track = track
        await self._offer(track)
        if self.reconnect:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _offer(self, track: MediaStreamTrack) -> None:
        pc = RTCPeerConnection(rtc_configuration(self.settings))
        self._pc = pc
        pc.on("track", self._handle_track)
        pc.on("connectionstatechange", self._handle_state)
        try:
            if self.reconnect:
                track = self._relay.subscribe(track, buffered=False)
            sent = track if self.bitrate is None else MonoOpusTrack(track, self.bitrate)
            pc.addTransceiver(sent, direction="sendrecv")
            offer = await pc.createOffer()
            with announced_gathering(self.settings.announced_address):
                await pc.setLocalDescription(offer)
            response = await self._http.post(
                self.whip_url,
                content=pc.localDescription.sdp.encode(),
                headers={**self._headers, "Content-Type": "application/sdp"},
            )
            if response.status_code != 201:
                raise WhipError(response.status_code, response.text.strip() or "no detail")
            location = response.headers.get("location")
            if not location:
                raise WhipError(502, "201 without a Location header")
            self.location = str(response.url.join(location))
            answer = strip_mdns_candidates(response.text)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except BaseException:
            await self._shutdown_media()
            raise

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait for ``connected``; ``ConnectionError`` if it failed/closed first."""
        done = asyncio.ensure_future(self._connected.wait())
        ended = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait({done, ended}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            done.cancel()
            ended.cancel()
        if not self._connected.is_set() or self._failed.is_set():
            raise ConnectionError(f"not connected (state {self.connection_state})")

    async def wait_ended(self, timeout: float = 10.0) -> None:
        """Wait until the connection is failed or closed (e.g. the host removed us)."""
        await asyncio.wait_for(self._ended.wait(), timeout)

    async def close(self) -> None:
        """DELETE the session (best effort) and close the peer connection."""
        self._closing = True
        await stop_task(self._watchdog)
        self._watchdog = None
        try:
            if self.location is not None:
                location, self.location = self.location, None
                try:
                    await self._http.delete(location, headers=self._headers)
                except httpx.HTTPError as exc:
                    logger.warning("WHIP DELETE %s failed: %r", location, exc)
        finally:
            await self._shutdown_media()
            await self._http.aclose()
            if self.reconnect and self._track is not None:
                self._track.stop()  # the copies never stop the source

    # -- reconnection ----------------------------------------------------------------------

    async def _packets_received(self) -> int:
        if self._pc is None:
            return 0
        report = await self._pc.getStats()
        return sum(
            int(getattr(s, "packetsReceived", 0))
            for s in report.values()
            if getattr(s, "type", "") == "inbound-rtp"
        )

    async def _watch(self) -> None:
        """Notice a dead connection (failed, or no RTP for ``silence_timeout``) and reconnect."""
        packets, quiet_since = -1, time.monotonic()
        while not self._closing:
            await asyncio.sleep(0.25)
            state = self.connection_state
            if state not in ("failed", "closed"):
                count = await self._packets_received()
                now = time.monotonic()
                if count != packets:
                    packets, quiet_since = count, now
                if now - quiet_since < self.silence_timeout:
                    continue
            logger.warning(
                "WHIP connection lost (%s, no media for %.1f s); reconnecting",
                state,
                time.monotonic() - quiet_since,
            )
            if not await self._reconnect():
                self._ended.set()
                return
            packets, quiet_since = -1, time.monotonic()

    async def _reconnect(self) -> bool:
        """New peer connection and POST until it connects; False when it should give up."""
        assert self._track is not None
        deadline = time.monotonic() + self.reconnect_for
        delay = 0.25
        while not self._closing and time.monotonic() < deadline:
            await self._drop_connection()
            try:
                await self._offer(self._track)
                await self.wait_connected(min(10.0, max(1.0, deadline - time.monotonic())))
                self.reconnects += 1
                logger.info("WHIP reconnected (%d)", self.reconnects)
                return True
            except WhipError as exc:
                if 400 <= exc.status < 500 and exc.status not in (408, 429):
                    logger.warning("WHIP reconnect refused for good: %s", exc)
                    return False
                logger.info("WHIP reconnect failed: %s", exc)
            except (ConnectionError, httpx.HTTPError, TimeoutError) as exc:
                logger.info("WHIP reconnect failed: %r", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)
        return False

    async def _drop_connection(self) -> None:
        """Forget the dead session (no DELETE: its node is gone) before a new offer."""
        self.location = None
        pc, self._pc = self._pc, None
        self._connected.clear()
        self._failed.clear()
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()
        task, self._return_task = self._return_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.recorder = None  # the first connection's file is complete; drain from now on

    async def _shutdown_media(self) -> None:
        if self._pc is not None:
            await self._pc.close()
        if self._return_task is not None:
            # The track ends when the pc closes; the recorder then finishes its file.
            try:
                await asyncio.wait_for(self._return_task, 2.0)
            except TimeoutError:
                logger.warning("return track reader did not stop in time")

    def _handle_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        if self._pc is not None:
            tune_audio_receivers(self._pc)
        if self.on_return is not None:
            self.on_return(track)
        else:
            self._return_task = asyncio.get_running_loop().create_task(self._run_return(track))

    def _handle_state(self) -> None:
        if self._pc is None:
            return
        state = self._pc.connectionState
        logger.debug("WHIP connection %s", state)
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
            self._failed.set()
            if not self.reconnect or self._closing:
                self._ended.set()

    async def _run_return(self, track: MediaStreamTrack) -> None:
        if self.recorder is not None:
            await self.recorder.run(track)
            return
        while True:  # nobody listens: drain so aiortc's queue does not grow
            try:
                await track.recv()
            except MediaStreamError:
                return
