"""Publish any audio track as Opus mono at a chosen bitrate.

aiortc encodes every outgoing audio track at 96 kb/s stereo. A speaker's voice needs
a third of that: :class:`MonoOpusTrack` wraps a source track (``ToneTrack``, a
``MediaPlayer`` track, a microphone), resamples it to 48 kHz mono 20 ms frames,
encodes them itself and hands aiortc pre-encoded packets (its sender then only
packetizes). Pacing is the source's: each ``recv`` waits for source frames.
"""

from __future__ import annotations

import asyncio
import collections
import fractions

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler, Packet
from av.stream import Stream

from .pcm import FRAME_SAMPLES, SAMPLE_RATE, downmix_to_mono
from .return_track import MonoOpusEncoder

__all__ = ["SPEAKER_BITRATE", "MonoOpusTrack"]

SPEAKER_BITRATE = 40_000
_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


class MonoOpusTrack(MediaStreamTrack):
    """Opus packets (mono, ``bitrate``) of ``source``'s audio, one per 20 ms."""

    kind = "audio"

    def __init__(self, source: MediaStreamTrack, bitrate: int = SPEAKER_BITRATE) -> None:
        super().__init__()
        if source.kind != "audio":
            raise ValueError("MonoOpusTrack needs an audio track")
        self.source = source
        self._encoder = MonoOpusEncoder(bitrate)
        self._resampler = AudioResampler("s16", "mono", SAMPLE_RATE, frame_size=FRAME_SAMPLES)
        self._pending: collections.deque[Packet[Stream]] = collections.deque()
        self._pts = 0

    async def recv(self) -> Packet[Stream]:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        while not self._pending:
            frame = await self.source.recv()  # MediaStreamError when the source ends
            if not isinstance(frame, AudioFrame):
                continue
            for chunk in self._resampler.resample(frame):
                pcm = downmix_to_mono(chunk.to_ndarray(), 1)
                for packet in await loop.run_in_executor(None, self._encoder.encode, pcm):
                    packet.pts = self._pts
                    packet.time_base = _TIME_BASE
                    self._pts += FRAME_SAMPLES
                    self._pending.append(packet)
        return self._pending.popleft()

    def stop(self) -> None:
        super().stop()
        self.source.stop()
