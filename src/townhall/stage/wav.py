"""Write an audio track to a 16-bit mono 48 kHz WAV file (stdlib ``wave``)."""

from __future__ import annotations

import logging
import wave

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

from .pcm import SAMPLE_RATE, downmix_to_mono

__all__ = ["WavRecorder"]

logger = logging.getLogger(__name__)


class WavRecorder:
    """Reads frames from a track into a WAV file until the track ends.

    Mono: channels are averaged. Frames in another format or rate are resampled.
    The file is complete (header patched) when :meth:`run` returns or is cancelled.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.frames = 0
        """Frames written."""

    async def run(self, track: MediaStreamTrack) -> None:
        resampler: AudioResampler | None = None
        with wave.open(self.path, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
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
                    out.writeframes(mono.tobytes())
                    self.frames += 1
        logger.debug("recorded %d frames to %s", self.frames, self.path)
