"""Programme store: blocking waits, atomic recording, crash recovery, VOD replay via ffmpeg."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import m3u8
import numpy as np
import pytest

from townhall.packaging.config import PackagingConfig
from townhall.packaging.playlist import Readiness
from townhall.packaging.programme import PartReady, ProgrammePackager, SegmentReady
from townhall.packaging.recorder import recover
from townhall.packaging.store import ProgrammeStore

FFMPEG = "/usr/bin/ffmpeg"
RATE = 48000
WALL0 = 1_750_000_000.0
CFG = PackagingConfig(fsync=False)


def tone(seconds: float, offset: int = 0) -> np.ndarray:
    t = (np.arange(int(seconds * RATE)) + offset) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)


def decoded_seconds(playlist: Path) -> float:
    out = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(playlist), "-f", "s16le", "-ac", "1", "-"],
        capture_output=True,
        check=True,
        timeout=20,
    )
    assert out.stderr == b""
    return len(out.stdout) / 2 / RATE


async def test_programme_exists_before_anyone_speaks(tmp_path: Path) -> None:
    packager = ProgrammePackager(CFG)
    store = ProgrammeStore(tmp_path, packager.init_segment, CFG)
    assert (tmp_path / "init.mp4").read_bytes() == packager.init_segment
    parsed = m3u8.loads(store.playlist_text())
    assert parsed.preload_hint.uri == "part0.0.m4s"


async def test_wait_for_part_resolves_on_arrival_not_before(tmp_path: Path) -> None:
    packager = ProgrammePackager(CFG)
    store = ProgrammeStore(tmp_path, packager.init_segment, CFG)
    assert store.check_request("0", "1").readiness is Readiness.WAIT
    waiter = asyncio.create_task(store.wait_for_part(0, 1, timeout=5.0))
    seg_waiter = asyncio.create_task(store.wait_for_part(0, None, timeout=5.0))
    pcm = tone(3.0)
    got_first = False
    for i in range(0, pcm.size, 960):
        events = packager.push(pcm[i : i + 960], WALL0 + i / RATE)
        await store.publish(events)
        await asyncio.sleep(0)
        if any(isinstance(e, PartReady) and (e.msn, e.index) == (0, 0) for e in events):
            got_first = True
            assert store.get_part(0, 0) is not None
            assert not waiter.done()  # part 0.0 exists, 0.1 does not
        if any(isinstance(e, PartReady) and (e.msn, e.index) == (0, 1) for e in events):
            assert await asyncio.wait_for(waiter, 1.0) is True
            assert not seg_waiter.done()
    assert got_first
    assert await seg_waiter is True
    assert store.get_segment(0) is not None
    assert store.get_part(0, 1) is not None and store.get_part(9, 0) is None


async def test_wait_for_part_times_out(tmp_path: Path) -> None:
    packager = ProgrammePackager(CFG)
    store = ProgrammeStore(tmp_path, packager.init_segment, CFG)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await store.wait_for_part(0, 0, timeout=0.2) is False
    assert loop.time() - started == pytest.approx(0.2, abs=0.1)


async def test_finish_wakes_waiters_and_writes_replay(tmp_path: Path) -> None:
    packager = ProgrammePackager(PackagingConfig())  # with fsync
    store = ProgrammeStore(tmp_path, packager.init_segment, PackagingConfig())
    pcm = tone(5.0)
    waiter = asyncio.create_task(store.wait_for_part(40, 0, timeout=5.0))
    for i in range(0, pcm.size, 960):
        await store.publish(packager.push(pcm[i : i + 960], WALL0 + i / RATE))
    await store.publish(packager.finish())
    await store.finish()
    assert await waiter is True and store.ended
    live = m3u8.loads(store.playlist_text())
    assert live.is_endlist
    replay = tmp_path / "replay.m3u8"
    parsed = m3u8.loads(replay.read_text())
    assert parsed.is_endlist and parsed.playlist_type == "vod"
    assert [s.uri for s in parsed.segments] == ["seg0.m4s", "seg1.m4s", "seg2.m4s"]
    assert store.vod_text() == replay.read_text()
    assert decoded_seconds(replay) == pytest.approx(5.0, abs=0.1)
    with pytest.raises(RuntimeError):
        await store.publish([])


async def test_segments_land_on_disk_atomically(tmp_path: Path) -> None:
    packager = ProgrammePackager(CFG)
    store = ProgrammeStore(tmp_path, packager.init_segment, CFG)
    pcm = tone(7.0)
    for i in range(0, pcm.size, 960):
        events = packager.push(pcm[i : i + 960], WALL0 + i / RATE)
        await store.publish(events)
        for e in events:
            if isinstance(e, SegmentReady):
                # as soon as publish returns, the complete file and its index line are there
                assert (tmp_path / f"seg{e.msn}.m4s").read_bytes() == e.data
                lines = (tmp_path / "index.jsonl").read_text().splitlines()
                assert json.loads(lines[-1])["msn"] == e.msn
    assert not list(tmp_path.glob("*.tmp"))
    assert sorted(p.name for p in tmp_path.glob("seg*.m4s")) == [f"seg{i}.m4s" for i in range(3)]
    # a second store on the same directory must not clobber the recording
    with pytest.raises(FileExistsError):
        ProgrammeStore(tmp_path, packager.init_segment, CFG)


async def test_recover_after_crash_mid_segment(tmp_path: Path) -> None:
    packager = ProgrammePackager(CFG)
    store = ProgrammeStore(tmp_path, packager.init_segment, CFG)
    pcm = tone(9.0)
    for i in range(0, pcm.size, 960):
        await store.publish(packager.push(pcm[i : i + 960], WALL0 + i / RATE))
    written = sorted(tmp_path.glob("seg*.m4s"))
    assert len(written) == 4
    # simulate a kill mid-write: half a segment in a .tmp file and a truncated index line
    (tmp_path / "seg4.m4s.tmp").write_bytes(written[0].read_bytes()[:500])
    with open(tmp_path / "index.jsonl", "a") as fh:
        fh.write('{"msn":4,"duration":2.04')
    # and a segment renamed into place whose index line was lost entirely
    lines = (tmp_path / "index.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "index.jsonl").write_text("".join(lines[:2] + lines[3:]))  # drop seg2's line
    del store, packager

    rec = ProgrammeStore.recover(tmp_path, CFG)
    assert [s.msn for s in rec.segments] == [0, 1, 2, 3]
    assert rec.next_msn == 4 and rec.next_decode_time == 4 * 96 * 1024
    assert abs((rec.segments[2].pdt - rec.segments[1].pdt).total_seconds() - 2.048) < 1e-3
    text = (tmp_path / "replay.m3u8").read_text()
    assert "tmp" not in text and "#EXT-X-ENDLIST" in text and "DISCONTINUITY" not in text
    assert decoded_seconds(tmp_path / "replay.m3u8") == pytest.approx(4 * 2.048, abs=0.1)

    # resume the programme after the restart: numbering and timeline continue
    packager2 = ProgrammePackager(
        CFG, first_msn=rec.next_msn, first_decode_time=rec.next_decode_time
    )
    store2 = ProgrammeStore(tmp_path, packager2.init_segment, CFG, resume=rec)
    assert store2.check_request("4", "0").readiness is Readiness.WAIT
    pcm2 = tone(4.5)
    for i in range(0, pcm2.size, 960):
        await store2.publish(packager2.push(pcm2[i : i + 960], WALL0 + 20 + i / RATE))
    await store2.publish(packager2.finish())
    await store2.finish()
    parsed = m3u8.loads((tmp_path / "replay.m3u8").read_text())
    assert [s.uri for s in parsed.segments] == [f"seg{i}.m4s" for i in range(7)]
    # the resumed segments were indexed properly (the truncated line did not swallow them)
    assert all(s.program_date_time is not None for s in parsed.segments)
    assert parsed.segments[4].program_date_time.timestamp() == pytest.approx(
        WALL0 + 20 - 1024 / RATE, abs=1e-3
    )
    assert decoded_seconds(tmp_path / "replay.m3u8") == pytest.approx(4 * 2.048 + 4.5, abs=0.15)


def test_recover_requires_a_recording(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        recover(tmp_path)
