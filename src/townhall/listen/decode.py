"""Decode fMP4 AAC (an init section plus fragments, i.e. LL-HLS parts or segments) to PCM.

Each fragment is demuxed on its own as ``init + fragment`` (a valid fMP4 file since every
fragment is a ``moof`` with a ``tfdt`` plus its ``mdat``), but the packets go through one
long-lived decoder so AAC's overlap between frames carries across part boundaries and the work
per fragment is constant (no re-decoding of what came before). Sync and CPU-bound: call it from
a worker thread in asyncio code.
"""

from __future__ import annotations

import io

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48000
"""Output rate: mono s16 at 48 kHz, whatever the stream is."""


class DecodeError(Exception):
    """A fragment or init section could not be decoded."""


class FragmentDecoder:
    """Incremental decoder for one init section and the fragments that follow it."""

    def __init__(self, init: bytes, *, sample_rate: int = SAMPLE_RATE) -> None:
        self.init = init
        try:
            with av.open(io.BytesIO(init), mode="r", format="mp4") as container:
                if not container.streams.audio:
                    raise DecodeError("init section has no audio track")
                stream = container.streams.audio[0]
                codec_name = stream.codec_context.name
                extradata = stream.codec_context.extradata
        except av.FFmpegError as exc:
            raise DecodeError(f"bad init section: {exc}") from exc
        codec = av.CodecContext.create(codec_name, "r")
        if not isinstance(codec, av.AudioCodecContext):
            raise DecodeError(f"{codec_name} is not an audio codec")
        self._codec = codec
        if extradata:
            self._codec.extradata = extradata
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)

    def decode(self, fragment: bytes) -> npt.NDArray[np.int16]:
        """PCM (mono int16) of one fragment, continuing from the previous one."""
        chunks: list[npt.NDArray[np.int16]] = []
        packets = 0
        try:
            with av.open(io.BytesIO(self.init + fragment), mode="r", format="mp4") as container:
                for packet in container.demux(container.streams.audio[0]):
                    if packet.size == 0:
                        continue
                    packets += 1
                    for frame in self._codec.decode(packet):
                        chunks.extend(self._pcm(frame))
        except av.FFmpegError as exc:
            raise DecodeError(f"cannot decode fragment: {exc}") from exc
        if packets == 0:
            raise DecodeError("fragment holds no audio packets")
        return _join(chunks)

    def flush(self) -> npt.NDArray[np.int16]:
        """Whatever the decoder and resampler still hold."""
        chunks: list[npt.NDArray[np.int16]] = []
        try:
            for frame in self._codec.decode(None):
                chunks.extend(self._pcm(frame))
            for out in self._resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        except av.FFmpegError as exc:
            raise DecodeError(f"cannot flush decoder: {exc}") from exc
        return _join(chunks)

    def _pcm(self, frame: av.AudioFrame) -> list[npt.NDArray[np.int16]]:
        return [
            out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
            for out in self._resampler.resample(frame)
        ]


def _join(chunks: list[npt.NDArray[np.int16]]) -> npt.NDArray[np.int16]:
    if not chunks:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(chunks)
