"""The outbound N-1 track: what a speaker hears from the stage.

The mixer pushes 20 ms int16 mono frames with :meth:`ReturnTrack.push` at its own
cadence; aiortc pulls with :meth:`ReturnTrack.recv` at the track's cadence (real
time, see :class:`FramePacer`). Between the two clocks sits a small bounded queue:
when it is full the oldest frame is dropped (latency stays bounded), when it is empty
the track sends silence (the stream never stalls).

aiortc's own Opus encoder is fixed at 96 kb/s stereo. This track encodes itself
(libopus via PyAV, mono, :data:`RETURN_BITRATE`, ``application=voip``) and hands
aiortc pre-encoded packets, which its sender only packetizes (the ``pack`` path,
the one ``MediaPlayer(decode=False)`` uses). Encoding runs in the event loop: a 20 ms
mono frame encodes in ~55 µs (``python -m bench --only stage_cpu`` measures it), less than
handing it to an executor thread and back costs.
"""

from __future__ import annotations

import collections
import fractions
import threading

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, CodecContext, Packet
from av.stream import Stream

from .pacing import FramePacer
from .pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm

__all__ = ["RETURN_BITRATE", "RETURN_QUEUE_FRAMES", "MonoOpusEncoder", "ReturnTrack"]

RETURN_BITRATE = 40_000
RETURN_QUEUE_FRAMES = 5  # 100 ms: the most latency the clock mismatch may add
_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


class MonoOpusEncoder:
    """One libopus encoder; not thread-safe, used by one ``recv`` at a time."""

    def __init__(self, bitrate: int) -> None:
        codec = CodecContext.create("libopus", "w")
        codec.bit_rate = bitrate
        codec.format = "s16"
        codec.layout = "mono"
        codec.sample_rate = SAMPLE_RATE
        codec.time_base = _TIME_BASE
        codec.options = {"application": "voip"}
        self._codec = codec
        self._lock = threading.Lock()

    def encode(self, pcm: Pcm) -> list[Packet[Stream]]:
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        with self._lock:
            return list(self._codec.encode(frame))


class ReturnTrack(MediaStreamTrack):
    """An audio track fed by :meth:`push`, sending Opus mono packets in real time."""

    kind = "audio"

    def __init__(
        self, bitrate: int = RETURN_BITRATE, max_frames: int = RETURN_QUEUE_FRAMES
    ) -> None:
        super().__init__()
        self._queue: collections.deque[Pcm] = collections.deque(maxlen=max_frames)
        self._encoder = MonoOpusEncoder(bitrate)
        self._pacer = FramePacer(FRAME_SAMPLES, SAMPLE_RATE)
        self._silence: Pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._pending: collections.deque[Packet[Stream]] = collections.deque()
        self.frames_pushed = 0
        """Frames the mixer pushed."""
        self.frames_dropped = 0
        """Frames dropped because the queue was full (the mixer ran ahead)."""
        self.frames_silent = 0
        """Frames sent as silence because the queue was empty (the mixer fell behind)."""

    def push(self, pcm: Pcm) -> None:
        """Queue one 20 ms frame (int16 mono, 960 samples). Safe from any thread."""
        frame = np.asarray(pcm)
        if frame.dtype != np.int16 or frame.size != FRAME_SAMPLES:
            raise ValueError(
                f"return audio must be int16 x {FRAME_SAMPLES}, got {frame.dtype} x {frame.size}"
            )
        if len(self._queue) == self._queue.maxlen:
            self.frames_dropped += 1
        self._queue.append(frame.reshape(-1))  # deque(maxlen) drops the oldest
        self.frames_pushed += 1

    def queued(self) -> int:
        """Frames waiting to be sent."""
        return len(self._queue)

    async def recv(self) -> Packet[Stream]:
        """Wait for the next 20 ms slot and return its Opus packet."""
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next_pts()
        while not self._pending:
            try:
                pcm = self._queue.popleft()
            except IndexError:
                pcm = self._silence
                self.frames_silent += 1
            self._pending.extend(self._encoder.encode(pcm))
        packet = self._pending.popleft()
        # libopus stamps its pre-skip (-312); aiortc's ``pack`` takes pts as the RTP offset.
        packet.pts = pts
        packet.time_base = _TIME_BASE
        return packet
