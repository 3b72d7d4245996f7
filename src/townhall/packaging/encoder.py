"""AAC-LC encoder (FFmpeg native encoder through PyAV): int16 mono PCM in, raw AAC frames out."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

from townhall.packaging.config import AAC_FRAME_SAMPLES


class AacEncoder:
    """Synchronous AAC-LC encoder producing raw access units of 1024 samples each.

    Input of any length is accepted; samples that do not fill a whole frame are buffered until
    the next call. The encoder adds ``priming_samples`` of delay at the start (FFmpeg: 1024),
    so output frame ``k`` decodes to input samples ``[k*1024 - priming, (k+1)*1024 - priming)``.
    CPU-bound: callers on an event loop should run it in a thread.
    """

    def __init__(self, sample_rate: int = 48000, bitrate: int = 64000) -> None:
        ctx = av.CodecContext.create("aac", "w")
        ctx.sample_rate = sample_rate
        ctx.layout = "mono"
        ctx.format = "fltp"
        ctx.bit_rate = bitrate
        ctx.options = {"aac_coder": "fast"}
        ctx.open()
        self._ctx = ctx
        self._sample_rate = sample_rate
        self._pending = np.zeros(0, dtype=np.int16)
        self._pts = 0
        self._priming: int | None = None
        self._flushed = False
        self.audio_specific_config: bytes = bytes(ctx.extradata or b"")
        """MPEG-4 AudioSpecificConfig (goes into the esds of the init segment)."""
        if len(self.audio_specific_config) < 2:
            raise RuntimeError("AAC encoder did not provide an AudioSpecificConfig")

    @property
    def sample_rate(self) -> int:
        """Input and output sample rate."""
        return self._sample_rate

    @property
    def priming_samples(self) -> int:
        """Encoder delay in samples (known after the first output frame; FFmpeg's is 1024)."""
        return AAC_FRAME_SAMPLES if self._priming is None else self._priming

    def encode(self, pcm: npt.NDArray[np.int16]) -> list[bytes]:
        """Encode mono int16 samples; returns the AAC frames that became available."""
        if self._flushed:
            raise RuntimeError("encoder already flushed")
        samples = np.asarray(pcm)
        if samples.dtype != np.int16:
            raise TypeError(f"expected int16 PCM, got {samples.dtype}")
        if samples.ndim != 1:
            samples = samples.reshape(-1)
        buf = np.concatenate((self._pending, samples)) if self._pending.size else samples
        whole = (buf.size // AAC_FRAME_SAMPLES) * AAC_FRAME_SAMPLES
        self._pending = buf[whole:].copy()
        out: list[bytes] = []
        for start in range(0, whole, AAC_FRAME_SAMPLES):
            out.extend(self._encode_frame(buf[start : start + AAC_FRAME_SAMPLES]))
        return out

    def flush(self) -> list[bytes]:
        """Pad the buffered remainder with silence to a whole frame, then drain the encoder."""
        if self._flushed:
            return []
        out: list[bytes] = []
        if self._pending.size:
            padded = np.zeros(AAC_FRAME_SAMPLES, dtype=np.int16)
            padded[: self._pending.size] = self._pending
            self._pending = np.zeros(0, dtype=np.int16)
            out.extend(self._encode_frame(padded))
        self._flushed = True
        for packet in self._ctx.encode(None):
            out.append(bytes(packet))
        return out

    def _encode_frame(self, block: npt.NDArray[np.int16]) -> list[bytes]:
        planar = (block.astype(np.float32) * (1.0 / 32768.0)).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="mono")
        frame.sample_rate = self._sample_rate
        frame.pts = self._pts
        self._pts += AAC_FRAME_SAMPLES
        out: list[bytes] = []
        for packet in self._ctx.encode(frame):
            if self._priming is None and packet.pts is not None:
                self._priming = max(0, -int(packet.pts))
            out.append(bytes(packet))
        return out
