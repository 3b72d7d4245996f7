"""fMP4 writer: box structure round-trips and real FFmpeg decodes init + segments of a tone."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from townhall.packaging.encoder import AacEncoder
from townhall.packaging.fmp4 import find_box, fragment, fragment_infos, init_segment, parse_boxes

FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"
RATE = 48000


def tone(seconds: float, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * freq * t) * 12000).astype(np.int16)


def test_init_segment_structure() -> None:
    enc = AacEncoder()
    init = init_segment(enc.audio_specific_config, RATE)
    boxes = parse_boxes(init)
    assert [b.kind for b in boxes] == ["ftyp", "moov"]
    mdhd = find_box(boxes, "moov/trak/mdia/mdhd")
    assert mdhd is not None
    assert struct.unpack_from(">I", mdhd.payload, 12)[0] == RATE
    hdlr = find_box(boxes, "moov/trak/mdia/hdlr")
    assert hdlr is not None and hdlr.payload[8:12] == b"soun"
    trex = find_box(boxes, "moov/mvex/trex")
    assert trex is not None
    assert struct.unpack_from(">II", trex.payload, 4) == (1, 1)
    stsd = find_box(boxes, "moov/trak/mdia/minf/stbl/stsd")
    assert stsd is not None and b"mp4a" in stsd.payload and b"esds" in stsd.payload
    assert enc.audio_specific_config in stsd.payload


def test_fragment_structure_round_trips() -> None:
    frames = [bytes([i]) * (100 + i) for i in range(24)]
    data = fragment(7, 123 * 1024, frames)
    boxes = parse_boxes(data)
    assert [b.kind for b in boxes] == ["moof", "mdat"]
    assert boxes[1].payload == b"".join(frames)
    tfhd = boxes[0].find("traf/tfhd")
    assert tfhd is not None and int.from_bytes(tfhd.payload[1:4], "big") & 0x020000
    trun = boxes[0].find("traf/trun")
    assert trun is not None
    (count, offset) = struct.unpack_from(">Ii", trun.payload, 4)
    assert count == 24
    # data offset is relative to the moof start and points at the first mdat byte
    assert data[offset : offset + len(frames[0])] == frames[0]
    (info,) = fragment_infos(data)
    assert (info.sequence, info.base_decode_time, info.sample_count, info.duration) == (
        7,
        123 * 1024,
        24,
        24 * 1024,
    )


def test_parser_rejects_truncated_data() -> None:
    data = fragment(1, 0, [b"x" * 50])
    with pytest.raises(ValueError):
        parse_boxes(data[:-10])
    with pytest.raises(ValueError):
        fragment(0, 0, [b"x"])
    with pytest.raises(ValueError):
        fragment(1, 0, [])


def test_ffmpeg_decodes_tone_from_init_plus_fragments(tmp_path: Path) -> None:
    enc = AacEncoder()
    frames = enc.encode(tone(4.0)) + enc.flush()
    init = init_segment(enc.audio_specific_config, RATE)
    body = b""
    seq, t = 1, 0
    for start in range(0, len(frames), 24):
        chunk = frames[start : start + 24]
        body += fragment(seq, t, chunk)
        seq += 1
        t += len(chunk) * 1024
    path = tmp_path / "tone.mp4"
    path.write_bytes(init + body)

    probe = subprocess.run(
        [FFPROBE, "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels",
         "-show_entries", "format=duration", "-of", "default=nw=1", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "codec_name=aac" in probe.stdout
    assert "sample_rate=48000" in probe.stdout
    assert "channels=1" in probe.stdout
    duration = float(probe.stdout.split("duration=")[1].split()[0])
    assert duration == pytest.approx(len(frames) * 1024 / RATE, abs=0.03)
    assert duration == pytest.approx(4.0, abs=0.1)

    pcm = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    assert audio.size == pytest.approx(4.0 * RATE, abs=0.1 * RATE)
    window = audio[RATE : 3 * RATE]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(window.size)))
    freqs = np.fft.rfftfreq(window.size, 1 / RATE)
    assert freqs[int(np.argmax(spectrum))] == pytest.approx(1000.0, abs=2.0)
    # energy concentrated at the tone, and level close to the input's
    band = spectrum[(freqs > 950) & (freqs < 1050)].sum()
    assert band / spectrum.sum() > 0.5
    rms = np.sqrt(np.mean(window**2))
    assert rms == pytest.approx(12000 / np.sqrt(2), rel=0.15)
