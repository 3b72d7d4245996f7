"""Audio sources a speaker can publish: a test tone, or any file FFmpeg can read."""

from __future__ import annotations

import fractions
import math

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from .pacing import FramePacer
from .pcm import FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["ToneTrack", "file_track"]


class ToneTrack(MediaStreamTrack):
    """A sine at ``freq`` Hz: 20 ms s16 frames at 48 kHz, paced in real time.

    ``amplitude`` is a fraction of full scale (0..1); ``channels`` is 1 or 2.
    The phase runs on across frames, so the tone is clean at frame edges.
    """

    kind = "audio"

    def __init__(self, freq: float, amplitude: float = 0.3, channels: int = 1) -> None:
        super().__init__()
        if not 0 < freq < SAMPLE_RATE / 2:
            raise ValueError(f"freq must be in (0, {SAMPLE_RATE // 2}) Hz")
        if not 0 <= amplitude <= 1:
            raise ValueError("amplitude must be in [0, 1]")
        if channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        self.freq = freq
        self.amplitude = amplitude
        self.channels = channels
        self._pacer = FramePacer(FRAME_SAMPLES, SAMPLE_RATE)
        self._step = 2 * math.pi * freq / SAMPLE_RATE

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next_pts()
        n = np.arange(pts, pts + FRAME_SAMPLES, dtype=np.float64)
        wave = np.sin((n * self._step) % (2 * math.pi)) * (self.amplitude * 32767)
        samples = np.round(wave).astype(np.int16)
        if self.channels == 2:
            samples = np.repeat(samples, 2)
        layout = "mono" if self.channels == 1 else "stereo"
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


def file_track(path: str, loop: bool = False) -> MediaStreamTrack:
    """The audio track of a file (WAV or anything FFmpeg reads), paced in real time.

    aiortc's ``MediaPlayer`` decodes in a thread; the track keeps the player alive.
    Raises ``ValueError`` if the file has no audio stream.
    """
    player = MediaPlayer(path, loop=loop)
    if player.audio is None:
        raise ValueError(f"{path}: no audio stream")
    track: MediaStreamTrack = player.audio
    return track
