"""Receive-side tuning for aiortc audio receivers: latency and CPU.

Latency: aiortc's audio receiver holds 4 complete frames (80 ms) in its jitter buffer before
it releases any. On the stage that delay is paid twice on the speaker-to-speaker path (into
the mixer, and back in the speaker's client), and the mixer already has a jitter buffer of
its own that reorders and fills gaps by RTP timestamp. So our receivers release a frame as
soon as it is complete (one frame of look-ahead: 20 ms). The buffer's capacity, loss and
reorder behaviour are unchanged.

CPU: aiortc hands every complete frame to a decoder thread through a ``queue.Queue`` and the
thread hands every decoded frame back with ``run_coroutine_threadsafe`` (a future, a task and
a wake-up of the event loop per 20 ms frame). An Opus frame decodes in tens of microseconds,
so our receivers decode in the event loop where the frame completes
(:class:`InlineDecoding`); aiortc's decoder thread stays idle until the receiver stops.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from typing import Any

import av
from aiortc import RTCPeerConnection
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterBuffer

logger = logging.getLogger(__name__)

AUDIO_PREFETCH = 1
"""Complete frames the receiver waits for before releasing one (aiortc's default: 4)."""

_JITTER = "_RTCRtpReceiver__jitter_buffer"
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"


class InlineDecoding:
    """Stands in for an aiortc receiver's decoder queue. ``put((codec, frame))`` (called by
    the receiver in the event loop) decodes at once and queues the audio for the track;
    ``put(None)`` (the receiver stopping) and ``get()`` (aiortc's decoder thread) go to the
    original queue, so the idle thread still ends the track when the receiver stops."""

    def __init__(self, track_queue: asyncio.Queue[Any], thread_queue: queue.Queue[Any]) -> None:
        self._track_queue = track_queue
        self._thread_queue = thread_queue
        self._codec_name: str | None = None
        self._decoder: Any = None
        self.decoded = 0
        """Frames decoded here."""

    def put(self, task: Any) -> None:
        if task is None:
            self._thread_queue.put(None)
            return
        codec, encoded_frame = task
        if codec.name != self._codec_name:
            self._decoder = get_decoder(codec)
            self._codec_name = codec.name
        try:
            frames = self._decoder.decode(encoded_frame)
        except av.FFmpegError as exc:  # keep the decoder state, as aiortc does
            logger.warning("failed to decode a %s frame: %s", codec.name, exc)
            return
        for frame in frames:
            self._track_queue.put_nowait(frame)
            self.decoded += 1

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return self._thread_queue.get(block, timeout)


def tune_audio_receivers(pc: RTCPeerConnection, prefetch: int = AUDIO_PREFETCH) -> int:
    """Shorten the jitter buffer and decode inline for every audio receiver of ``pc``;
    returns how many receivers were tuned.

    Call it before media flows (from the ``track`` event). If aiortc's internals change, this
    logs once and leaves the defaults in place rather than failing the session.
    """
    tuned = 0
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        receiver = transceiver.receiver
        if not hasattr(receiver, _JITTER) or not hasattr(receiver, _DECODER_QUEUE):
            logger.warning("aiortc receiver internals changed; receive tuning skipped")
            return tuned
        setattr(receiver, _JITTER, JitterBuffer(capacity=16, prefetch=prefetch))
        current = getattr(receiver, _DECODER_QUEUE)
        track_queue = getattr(receiver.track, "_queue", None)
        if not isinstance(current, InlineDecoding) and isinstance(track_queue, asyncio.Queue):
            setattr(receiver, _DECODER_QUEUE, InlineDecoding(track_queue, current))
        tuned += 1
    return tuned
