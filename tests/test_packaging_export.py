"""Export of a recording and clips: plain .m4a files ffprobe reads with the right length."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from townhall.packaging.config import PackagingConfig
from townhall.packaging.export import export_recording, make_clip
from townhall.packaging.fmp4 import parse_boxes
from townhall.packaging.programme import ProgrammePackager
from townhall.packaging.store import ProgrammeStore

FFPROBE = "/usr/bin/ffprobe"
FFMPEG = "/usr/bin/ffmpeg"
RATE = 48000
CFG = PackagingConfig(fsync=False)


def probe_duration(path: Path) -> float:
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_entries", "format=duration:stream=codec_name",
         "-of", "default=nw=1", str(path)],
        capture_output=True, text=True, check=True, timeout=20,
    ).stdout  # fmt: skip
    assert "codec_name=aac" in out
    return float(out.split("duration=")[1].split()[0])


def decoded_seconds(path: Path) -> float:
    pcm = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-"],
        capture_output=True, check=True, timeout=20,
    ).stdout  # fmt: skip
    return len(pcm) / 2 / RATE


@pytest.fixture
async def recording(tmp_path: Path) -> ProgrammeStore:
    packager = ProgrammePackager(CFG)
    store = ProgrammeStore(tmp_path / "rec", packager.init_segment, CFG)
    t = np.arange(int(12.3 * RATE)) / RATE
    pcm = (np.sin(2 * np.pi * 660 * t) * 9000).astype(np.int16)
    for i in range(0, pcm.size, 960):
        await store.publish(packager.push(pcm[i : i + 960], 1_750_000_000.0 + i / RATE))
    await store.publish(packager.finish())
    await store.finish()
    return store


def recorded_seconds(store: ProgrammeStore) -> float:
    return sum(s.duration for s in ProgrammeStore.recover(store.directory, CFG).segments)


async def test_export_whole_recording(recording: ProgrammeStore, tmp_path: Path) -> None:
    out = export_recording(recording.directory, tmp_path / "all.m4a")
    total = recorded_seconds(recording)
    assert total == pytest.approx(12.3 + 1024 / RATE, abs=1024 / RATE)
    assert probe_duration(out) == pytest.approx(total, abs=0.1)
    assert decoded_seconds(out) == pytest.approx(total, abs=0.1)
    kinds = [b.kind for b in parse_boxes(out.read_bytes())]
    assert "moof" not in kinds  # a plain MP4, not fragmented
    assert kinds.index("moov") < kinds.index("mdat")  # faststart
    assert not list(tmp_path.glob("*.tmp"))


async def test_clip_of_last_seconds(recording: ProgrammeStore, tmp_path: Path) -> None:
    out = make_clip(recording, tmp_path / "last5.m4a", seconds=5)
    assert probe_duration(out) == pytest.approx(5.0, abs=0.1)
    assert decoded_seconds(out) == pytest.approx(5.0, abs=0.1)
    assert out.stat().st_size < 60_000


async def test_clip_of_range(recording: ProgrammeStore, tmp_path: Path) -> None:
    out = make_clip(recording.directory, tmp_path / "range.m4a", start=3.0, end=7.5)
    assert probe_duration(out) == pytest.approx(4.5, abs=0.1)
    # range beyond the end is clamped
    tail = make_clip(recording.directory, tmp_path / "tail.m4a", start=10.0, end=100.0)
    assert probe_duration(tail) == pytest.approx(recorded_seconds(recording) - 10.0, abs=0.1)
    with pytest.raises(ValueError):
        make_clip(recording.directory, tmp_path / "bad.m4a", start=5.0, end=5.0)
    with pytest.raises(ValueError):
        make_clip(recording.directory, tmp_path / "bad.m4a", start=50.0, end=60.0)
