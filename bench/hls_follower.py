"""A minimal LL-HLS player for measurement: blocking playlist reload for the next part,
then the part, decoded with PyAV (one AAC decoder across parts, so no part starts cold).

Each part is handed over with the wall time its last byte arrived (when a player could
first use it), its position in the media timeline and its PROGRAM-DATE-TIME.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import av
import httpx
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext

logger = logging.getLogger(__name__)

RATE = 48_000


@dataclass(frozen=True)
class PartEntry:
    """One EXT-X-PART line of a playlist."""

    msn: int
    index: int
    uri: str
    duration: float
    pdt: float | None
    """PROGRAM-DATE-TIME of the part's first sample (epoch seconds), if the playlist says."""


@dataclass(frozen=True)
class Playlist:
    map_uri: str
    parts: list[PartEntry]
    hint: tuple[int, int] | None
    """(msn, part index) of the EXT-X-PRELOAD-HINT part."""


@dataclass(frozen=True)
class ReceivedPart:
    """A part as the player got it."""

    entry: PartEntry
    arrived: float
    """``time.time()`` when its last byte arrived."""
    first_sample: int
    """Media time of its first decoded sample, in 48 kHz samples."""
    pcm: npt.NDArray[np.float32]
    """Decoded mono float samples."""


def _pdt(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def parse_playlist(text: str) -> Playlist:
    """Parts (with their PDT) and the preload hint of an LL-HLS media playlist."""
    msn, index, offset = 0, 0, 0.0
    seg_pdt: float | None = None
    map_uri = ""
    parts: list[PartEntry] = []
    hint: tuple[int, int] | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MAP:"):
            map_uri = _attr(line, "URI")
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            seg_pdt = _pdt(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART:"):
            duration = float(_attr(line, "DURATION"))
            pdt = None if seg_pdt is None else seg_pdt + offset
            parts.append(PartEntry(msn, index, _attr(line, "URI"), duration, pdt))
            index += 1
            offset += duration
        elif line.startswith("#EXT-X-PRELOAD-HINT:"):
            hint = (msn, index)
        elif line and not line.startswith("#"):
            msn, index, offset = msn + 1, 0, 0.0
            seg_pdt = None
    return Playlist(map_uri, parts, hint)


def _attr(line: str, name: str) -> str:
    for item in line.split(":", 1)[1].split(","):
        key, _, value = item.partition("=")
        if key == name:
            return value.strip('"')
    raise ValueError(f"{name} missing in {line!r}")


class PartDecoder:
    """Demuxes init + part with PyAV and decodes with one persistent AAC decoder."""

    def __init__(self, init: bytes) -> None:
        self.init = init
        with av.open(io.BytesIO(init), "r") as container:
            stream = container.streams.audio[0]
            codec = av.CodecContext.create(stream.codec_context.name, "r")
            self._codec = cast(AudioCodecContext, codec)
            self._codec.extradata = stream.codec_context.extradata

    def decode(self, part: bytes) -> tuple[int, npt.NDArray[np.float32]]:
        chunks: list[npt.NDArray[np.float32]] = []
        first: int | None = None
        with av.open(io.BytesIO(self.init + part), "r") as container:
            stream = container.streams.audio[0]
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if first is None and packet.pts is not None:
                    first = int(packet.pts * packet.time_base * RATE)
                for frame in self._codec.decode(packet):
                    data = frame.to_ndarray().astype(np.float32)
                    if frame.format.is_planar:
                        mono = data.mean(axis=0)
                    else:
                        mono = data.reshape(-1, len(frame.layout.channels)).mean(axis=1)
                    if frame.format.name.startswith("s16"):
                        mono = mono / 32768.0
                    chunks.append(mono.astype(np.float32))
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return first or 0, pcm


async def follow(
    http: httpx.AsyncClient,
    playlist_url: str,
    seconds: float,
    on_part: Callable[[ReceivedPart], None],
) -> int:
    """Play the live edge for ``seconds`` like an LL-HLS client; returns parts received."""
    base = httpx.URL(playlist_url)
    first = await _get(http, base)
    playlist = parse_playlist(first.text)
    decoder = PartDecoder((await _get(http, base.join(playlist.map_uri))).content)
    if playlist.hint is None:
        raise RuntimeError("playlist has no preload hint: not a live LL-HLS playlist")
    want = playlist.hint
    deadline = time.monotonic() + seconds
    received = 0
    while time.monotonic() < deadline:
        reload = await _get(
            http, base.copy_merge_params({"_HLS_msn": want[0], "_HLS_part": want[1]})
        )
        playlist = parse_playlist(reload.text)
        entry = next((p for p in playlist.parts if (p.msn, p.index) == want), None)
        if entry is None:  # fell out of the window: jump to the live edge
            logger.warning("part %s not in the playlist; jumping to the live edge", want)
            want = playlist.hint or want
            continue
        body = (await _get(http, base.join(entry.uri))).content
        arrived = time.time()
        first_sample, pcm = decoder.decode(body)
        on_part(ReceivedPart(entry, arrived, first_sample, pcm))
        received += 1
        want = _next(playlist, entry)
    return received


def _next(playlist: Playlist, entry: PartEntry) -> tuple[int, int]:
    order = [(p.msn, p.index) for p in playlist.parts]
    pos = order.index((entry.msn, entry.index))
    if pos + 1 < len(order):
        return order[pos + 1]
    return playlist.hint or (entry.msn, entry.index + 1)


async def _get(http: httpx.AsyncClient, url: httpx.URL) -> httpx.Response:
    response = await http.get(url)
    response.raise_for_status()
    return response
