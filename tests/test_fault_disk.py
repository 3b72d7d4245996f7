"""Storage faults under a real live space (stage, mixer clock, AAC encoder, packager, store):

- the recording folder fills up (a real 40 KiB tmpfs; needs root, skipped otherwise): kept and
  asserted: a clear error is logged and exposed, parts keep coming on time, the segments written
  before the disk filled are intact and listed in the replay;
- slow storage (an injected 1.5 s delay in every segment write): kept and asserted: parts still
  appear every part duration (disk writes run behind the mixer clock, not in it), and every
  segment is on disk once the space ends.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from townhall.live.space import LiveSpace
from townhall.packaging import PackagingConfig
from townhall.packaging.recorder import RecordedSegment, Recorder, scan_recording
from townhall.stage import RtcSettings

pytestmark = pytest.mark.slow

CFG = PackagingConfig(part_frames=16, parts_per_segment=6)
RTC = RtcSettings(announced_address="127.0.0.1")


async def part_times(live: LiveSpace, count: int) -> list[float]:
    """Monotonic times at which the next ``count`` parts appeared in the live playlist."""
    times: list[float] = []
    store = live.programme
    for _ in range(count):
        msn, part = store.playlist.next_part_position()
        assert await store.wait_for_part(msn, part, 3.0), f"part {msn}.{part} did not appear"
        times.append(time.monotonic())
    return times


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (mount / "filler").write_bytes(b"x" * 28 * 1024)  # silence packs small: leave ~12 KiB
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_full_disk_stops_the_recording_not_the_live_audio(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="townhall.packaging.store")
    live = LiveSpace("full", small_disk / "hls", RTC, CFG)
    live.start()
    try:
        deadline = time.monotonic() + 20
        while live.programme.recording_error is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        error = live.programme.recording_error
        assert error is not None and "No space left on device" in error, error
        assert any("live audio goes on" in r.getMessage() for r in caplog.records)
        times = await part_times(live, 9)  # three seconds more of live parts
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert max(gaps) < CFG.part_target + 0.2, gaps
    finally:
        await live.stop()  # the replay playlist cannot be written either: logged, no crash
    assert not list((small_disk / "hls").glob("*.tmp"))  # no half-written files left
    kept = scan_recording(small_disk / "hls")
    assert kept and [s.msn for s in kept] == list(range(len(kept)))
    assert all(abs(s.duration - CFG.segment_duration) < 1e-6 for s in kept)


async def test_slow_storage_never_delays_live_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = Recorder.write_segment

    def slow_write(self: Recorder, seg: RecordedSegment, data: bytes) -> None:
        time.sleep(1.5)  # a disk that takes 1.5 s per segment (injected fault)
        write(self, seg, data)

    monkeypatch.setattr(Recorder, "write_segment", slow_write)
    live = LiveSpace("slow", tmp_path / "hls", RTC, CFG)
    live.start()
    try:
        times = await part_times(live, 20)  # 6.8 s: three segment writes are pending or done
    finally:
        await live.stop()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) < CFG.part_target + 0.2, gaps
    produced = live.programme.playlist.segments[-1].msn
    recorded = [s.msn for s in scan_recording(tmp_path / "hls")]
    assert recorded == list(range(produced + 1)), (recorded, produced)
    assert (tmp_path / "hls" / "replay.m3u8").exists()
