"""Baseline for :mod:`bench.n_minus_1`: one WebRTC leg, aiortc to aiortc on loopback,
no server. Marks sent as Opus mono (the speaker path, ``MonoOpusTrack``) and read from
the receiving peer's track: what a single leg costs in encode, transport, aiortc's
receive jitter buffer and decode. A → stage → B crosses two such legs."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from townhall.stage import MonoOpusTrack, RtcSettings, rtc_configuration
from townhall.stage.candidates import announced_gathering

from .common import LOOPBACK
from .marks import MarkDetector, MarkTrack, match_marks


async def one_leg(seconds: float) -> list[float]:
    """Latencies (s) of marks sent over one direct aiortc → aiortc leg."""
    config = rtc_configuration(RtcSettings(announced_address=LOOPBACK))
    sender, receiver = RTCPeerConnection(config), RTCPeerConnection(config)
    detector = MarkDetector()
    marks = MarkTrack(period=1.0, lead=0.5)
    readers: list[asyncio.Task[None]] = []

    @receiver.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        readers.append(asyncio.create_task(_read(track, detector)))

    try:
        sender.addTransceiver(MonoOpusTrack(marks), direction="sendonly")
        with announced_gathering(LOOPBACK):
            await sender.setLocalDescription(await sender.createOffer())
            await receiver.setRemoteDescription(sender.localDescription)
            await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        await asyncio.sleep(seconds)
    finally:
        marks.stop()
        await sender.close()
        await receiver.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return [f.wall - s.wall for s, f in match_marks(marks.sent, detector.found)]


async def _read(track: MediaStreamTrack, detector: MarkDetector) -> None:
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        wall = time.time()
        if isinstance(frame, AudioFrame):
            detector.feed(pcm_of(frame), wall)


def pcm_of(frame: AudioFrame) -> npt.NDArray[np.float32]:
    """Mono float32 in [-1, 1] of a packed s16 frame (what aiortc's decoder yields)."""
    channels = len(frame.layout.channels)
    mono = frame.to_ndarray().reshape(-1, channels).astype(np.float32).mean(axis=1)
    result: npt.NDArray[np.float32] = (mono / 32768.0).astype(np.float32)
    return result
