"""Receive-side latency tuning for aiortc audio receivers.

aiortc's audio receiver holds 4 complete frames (80 ms) in its jitter buffer before it
releases any. On the stage that delay is paid twice on the speaker-to-speaker path (into the
mixer, and back in the speaker's client), and the mixer already has a jitter buffer of its
own that reorders and fills gaps by RTP timestamp. So our receivers release a frame as soon
as it is complete (one frame of look-ahead: 20 ms). The buffer's capacity, loss and reorder
behaviour are unchanged.
"""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer

logger = logging.getLogger(__name__)

AUDIO_PREFETCH = 1
"""Complete frames the receiver waits for before releasing one (aiortc's default: 4)."""

_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"


def tune_audio_receivers(pc: RTCPeerConnection, prefetch: int = AUDIO_PREFETCH) -> int:
    """Replace the jitter buffer of every audio receiver of ``pc``; returns how many.

    Call it before media flows (from the ``track`` event). If aiortc's internals change, this
    logs once and leaves the defaults in place rather than failing the session.
    """
    tuned = 0
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        receiver = transceiver.receiver
        if not hasattr(receiver, _ATTRIBUTE):
            logger.warning("aiortc receiver has no %s; latency tuning skipped", _ATTRIBUTE)
            return tuned
        setattr(receiver, _ATTRIBUTE, JitterBuffer(capacity=16, prefetch=prefetch))
        tuned += 1
    return tuned
