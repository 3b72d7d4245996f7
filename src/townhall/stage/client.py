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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from .candidates import announced_gathering, strip_mdns_candidates
from .encoded import SPEAKER_BITRATE, MonoOpusTrack
from .errors import WhipError
from .latency import tune_audio_receivers
from .settings import RtcSettings, rtc_configuration
from .wav import WavRecorder

__all__ = ["WhipClient"]

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
        self._ended = asyncio.Event()

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
        pc = RTCPeerConnection(rtc_configuration(self.settings))
        self._pc = pc
        pc.on("track", self._handle_track)
        pc.on("connectionstatechange", self._handle_state)
        try:
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
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({done, ended}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            done.cancel()
            ended.cancel()
        if not self._connected.is_set() or self._ended.is_set():
            raise ConnectionError(f"not connected (state {self.connection_state})")

    async def wait_ended(self, timeout: float = 10.0) -> None:
        """Wait until the connection is failed or closed (e.g. the host removed us)."""
        await asyncio.wait_for(self._ended.wait(), timeout)

    async def close(self) -> None:
        """DELETE the session (best effort) and close the peer connection."""
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
        assert self._pc is not None
        state = self._pc.connectionState
        logger.debug("WHIP connection %s", state)
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
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
