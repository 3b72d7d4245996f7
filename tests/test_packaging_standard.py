"""Standard-HLS playlist: LL-HLS segments grouped into longer ones, parsed back with the m3u8
package; the store's standard segments decoded with PyAV and ffmpeg."""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import m3u8
import numpy as np
import pytest

from townhall.delivery.names import MediaName, parse_media_name
from townhall.packaging.config import PackagingConfig
from townhall.packaging.playlist import Segment, segment_uri
from townhall.packaging.programme import ProgrammePackager
from townhall.packaging.standard import StandardPlaylist, StandardSegment, standard_segment_uri
from townhall.packaging.store import ProgrammeStore

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
SEG = 2.048
FFMPEG = "/usr/bin/ffmpeg"
RATE = 48000
WALL0 = 1_750_000_000.0
CFG = PackagingConfig(fsync=False)
LL_TAGS = ("PART-INF", "SERVER-CONTROL", "EXT-X-PART:", "PRELOAD-HINT", "SKIP", "RENDITION-REPORT")


def seg(msn: int, duration: float = SEG, discontinuity: bool = False) -> Segment:
    return Segment(
        msn, duration, T0 + timedelta(seconds=SEG * msn), segment_uri(msn), (), discontinuity
    )


def make(
    group: int = 2,
    *,
    window: int | None = None,
    first_msn: int = 0,
    discontinuity_sequence: int | None = None,
) -> StandardPlaylist:
    return StandardPlaylist(
        group=group,
        nominal_segment_duration=SEG,
        window=window,
        first_msn=first_msn,
        discontinuity_sequence=discontinuity_sequence,
    )


def feed(pl: StandardPlaylist, msns: range) -> list[StandardSegment]:
    out = [pl.add(seg(m)) for m in msns]
    return [s for s in out if s is not None]


def parse(text: str) -> m3u8.M3U8:
    for tag in LL_TAGS:
        assert tag not in text, text
    parsed = m3u8.loads(text)
    assert parsed.version == 6 and parsed.is_independent_segments
    assert parsed.segment_map and parsed.segment_map[0].uri == "init.mp4"
    return parsed


def test_empty_playlist_is_valid_and_starts_at_the_first_group() -> None:
    parsed = parse(make().render())
    assert parsed.segments == [] and parsed.media_sequence == 0 and not parsed.is_endlist
    assert parsed.target_duration == 4
    assert parse(make(first_msn=7).render()).media_sequence == 3
    assert parse(make(first_msn=7).render(ended=True)).is_endlist


def test_groups_of_two_segments() -> None:
    pl = make()
    assert pl.add(seg(0)) is None
    std = pl.add(seg(1))
    assert std == StandardSegment(0, 2 * SEG, T0, "std0.m4s", (0, 1))
    assert [s.seq for s in feed(pl, range(2, 7))] == [1, 2]  # msn 6 opens group 3
    parsed = parse(pl.render())
    assert [s.uri for s in parsed.segments] == ["std0.m4s", "std1.m4s", "std2.m4s"]
    assert [s.duration for s in parsed.segments] == pytest.approx([4.096] * 3)
    assert parsed.segments[1].program_date_time == T0 + timedelta(seconds=2 * SEG)
    assert parsed.target_duration == 4  # round(4.096)
    assert pl.members(1) == (2, 3) and pl.members(3) is None
    assert standard_segment_uri(12) == "std12.m4s"


@pytest.mark.parametrize("group", [1, 2, 3, 5])
def test_target_duration_is_stable_and_every_extinf_fits(group: int) -> None:
    pl = make(group)
    expected = max(1, int(group * SEG + 0.5))
    assert pl.target_duration == expected
    for msn in range(40):
        pl.add(seg(msn))
        parsed = parse(pl.render())
        assert parsed.target_duration == expected
        assert all(round(s.duration) <= expected for s in parsed.segments)


def test_window_slides_and_spans_three_target_durations_plus_a_segment() -> None:
    pl = make()
    assert pl.window == 5
    sequences = []
    for msn in range(60):
        pl.add(seg(msn))
        parsed = parse(pl.render())
        sequences.append(parsed.media_sequence)
        assert len(parsed.segments) <= 5
        if parsed.segments:
            assert parsed.media_sequence == int(parsed.segments[0].uri[3:-4])
            # numbering is contiguous from the media sequence
            assert [s.uri for s in parsed.segments] == [
                f"std{parsed.media_sequence + i}.m4s" for i in range(len(parsed.segments))
            ]
    assert sequences == sorted(sequences) and sequences[-1] == 30 - 5
    span = sum(s.duration for s in m3u8.loads(pl.render()).segments)
    assert span >= 3 * pl.target_duration + pl.nominal_duration
    # shorter segments: a longer window keeps the span
    short = StandardPlaylist(group=1, nominal_segment_duration=0.5)
    assert short.window * 0.5 >= 3 * short.target_duration + 0.5


def test_unaligned_start_makes_a_short_first_group() -> None:
    pl = make(first_msn=5)  # resumed at msn 5: group 2 would be msns 4 and 5
    assert pl.media_sequence == 2
    first = pl.add(seg(5))
    assert first is not None and first.seq == 2 and first.members == (5,)
    assert first.duration == pytest.approx(SEG) and first.pdt == seg(5).pdt
    assert [s.members for s in feed(pl, range(6, 10))] == [(6, 7), (8, 9)]
    parsed = parse(pl.render())
    assert parsed.media_sequence == 2
    assert [s.duration for s in parsed.segments] == pytest.approx([SEG, 2 * SEG, 2 * SEG])
    with pytest.raises(ValueError):
        pl.add(seg(12))  # out of order
    # members: the window, slid-out groups, groups of an earlier run; nothing ahead
    feed(pl, range(10, 22))
    assert pl.segments[0].seq == 6
    assert pl.members(2) == (5,)  # slid out: still only what this playlist had
    assert pl.members(3) == (6, 7) and pl.members(1) == (2, 3) and pl.members(0) == (0, 1)
    assert pl.members(11) is None and pl.members(-1) is None
    assert make(first_msn=5).members(2) is None and make(first_msn=5).members(1) == (2, 3)


def test_finish_emits_the_short_trailing_group() -> None:
    pl = make(group=3)
    feed(pl, range(0, 4))
    last = pl.add(seg(4, duration=1.024))  # the packager's short last segment
    assert last is None
    trailing = pl.finish()
    assert trailing is not None and trailing.members == (3, 4) and trailing.seq == 1
    assert trailing.duration == pytest.approx(SEG + 1.024)
    assert pl.finish() is None
    parsed = parse(pl.render(ended=True))
    assert parsed.is_endlist and [s.uri for s in parsed.segments] == ["std0.m4s", "std1.m4s"]
    assert parsed.target_duration == 6  # round(6.144)
    # a programme ending on a group boundary has no trailing group
    aligned = make()
    feed(aligned, range(4))
    assert aligned.finish() is None


def test_discontinuity_sequence_follows_the_live_playlist_rules() -> None:
    pl = make(first_msn=9, discontinuity_sequence=3, window=3)
    first = pl.add(seg(9, discontinuity=True))  # failover: the new origin's first segment
    assert first is not None and first.discontinuity and first.members == (9,)
    text = pl.render()
    parsed = parse(text)
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:3" in text
    assert parsed.discontinuity_sequence == 3 and parsed.segments[0].discontinuity
    assert text.index("#EXT-X-DISCONTINUITY\n") < text.index("std4.m4s")
    feed(pl, range(10, 14))  # std5, std6: the window is full
    assert parse(pl.render()).discontinuity_sequence == 3
    feed(pl, range(14, 16))  # std7 pushes std4 (and its tag) out
    parsed = parse(pl.render())
    assert parsed.discontinuity_sequence == 4 and not any(s.discontinuity for s in parsed.segments)
    feed(pl, range(16, 18))
    assert parse(pl.render()).discontinuity_sequence == 4
    assert "DISCONTINUITY" not in make().render()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        make(group=0)
    with pytest.raises(ValueError):
        make(window=0)
    with pytest.raises(ValueError):
        PackagingConfig(standard_group=0)
    assert PackagingConfig().standard_segment_duration == pytest.approx(4.096)


def test_standard_media_names() -> None:
    assert parse_media_name("std.m3u8") == MediaName("standard")
    assert parse_media_name("std12.m4s") == MediaName("standard_segment", 12)
    assert parse_media_name("std007.m4s") == MediaName("standard_segment", 7)  # like seg names
    for bad in ("std.m4s", "std-1.m4s", "std1.m3u8", "std12345678901.m4s", "std9999999999.m4s"):
        assert parse_media_name(bad) is None, bad
    assert parse_media_name("seg3.m4s") == MediaName("segment", 3)


# -- the store ------------------------------------------------------------------------------


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)


def decode(init: bytes, media: bytes) -> tuple[float, int]:
    """(seconds of audio, fragments) in one standard segment after the init section."""
    fragments = media.count(b"moof")
    with av.open(io.BytesIO(init + media), format="mp4") as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    return samples / RATE, fragments


async def run_store(directory: Path, seconds: float) -> tuple[ProgrammeStore, ProgrammePackager]:
    packager = ProgrammePackager(CFG)
    store = ProgrammeStore(directory, packager.init_segment, CFG)
    pcm = tone(seconds)
    for i in range(0, pcm.size, 960):
        await store.publish(packager.push(pcm[i : i + 960], WALL0 + i / RATE))
    return store, packager


async def test_store_builds_standard_segments_that_decode(tmp_path: Path) -> None:
    store, packager = await run_store(tmp_path, 9.0)  # 4 LL segments: std0 and std1
    parsed = parse(store.standard_playlist_text())
    assert [s.uri for s in parsed.segments] == ["std0.m4s", "std1.m4s"]
    assert store.standard_playlist_text() is store.standard_playlist_text()  # cached
    for k in (0, 1):
        data = store.get_standard_segment(k)
        assert data == b"".join(store.get_segment(m) or b"" for m in (2 * k, 2 * k + 1))
        seconds, fragments = decode(store.get_init(), data)
        assert fragments == 2 * CFG.parts_per_segment  # several moof+mdat in one segment
        assert seconds == pytest.approx(4.096, abs=1e-6)
    assert store.get_standard_segment(2) is None  # not complete yet
    assert store.get_standard_segment(-1) is None
    # beyond the memory ring: rebuilt from the recording
    store._std_segments.clear()
    store._segments.clear()
    assert decode(store.get_init(), store.get_standard_segment(0) or b"")[0] == pytest.approx(4.096)
    # finish: the trailing group, ENDLIST
    await store.publish(packager.finish())
    await store.finish()
    parsed = parse(store.standard_playlist_text())
    assert parsed.is_endlist and parsed.segments[-1].uri == "std2.m4s"
    tail = store.get_standard_segment(2)
    assert tail is not None
    assert decode(store.get_init(), tail)[0] == pytest.approx(parsed.segments[-1].duration)
    assert sum(s.duration for s in parsed.segments) == pytest.approx(9.0, abs=0.05)


async def test_ffmpeg_reads_the_finished_standard_playlist(tmp_path: Path) -> None:
    store, packager = await run_store(tmp_path / "rec", 7.0)
    await store.publish(packager.finish())
    await store.finish()
    site = tmp_path / "site"
    site.mkdir()
    (site / "std.m3u8").write_text(store.standard_playlist_text())
    (site / "init.mp4").write_bytes(store.get_init())
    for s in m3u8.loads(store.standard_playlist_text()).segments:
        (site / s.uri).write_bytes(store.get_standard_segment(int(s.uri[3:-4])) or b"")
    out = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(site / "std.m3u8"), "-f", "s16le", "-ac", "1", "-"],
        capture_output=True,
        check=True,
        timeout=20,
    )
    assert out.stderr == b""
    assert len(out.stdout) / 2 / RATE == pytest.approx(7.0, abs=0.1)


async def test_resumed_store_starts_with_a_short_group(tmp_path: Path) -> None:
    store, _ = await run_store(tmp_path, 7.0)  # msns 0..2 complete, then a crash
    del store
    rec = ProgrammeStore.recover(tmp_path, CFG)
    assert rec.next_msn == 3
    packager = ProgrammePackager(CFG, first_msn=3, first_decode_time=rec.next_decode_time)
    store = ProgrammeStore(tmp_path, packager.init_segment, CFG, resume=rec)
    assert parse(store.standard_playlist_text()).media_sequence == 1
    pcm = tone(7.0)  # msns 3, 4 and 5
    for i in range(0, pcm.size, 960):
        await store.publish(packager.push(pcm[i : i + 960], WALL0 + 20 + i / RATE))
    parsed = parse(store.standard_playlist_text())
    assert [s.uri for s in parsed.segments] == ["std1.m4s", "std2.m4s"]
    assert store.standard.members(2) == (4, 5)
    assert parsed.segments[0].duration == pytest.approx(SEG)  # msn 3 only
    assert decode(store.get_init(), store.get_standard_segment(1) or b"")[0] == pytest.approx(SEG)
    # an earlier run's group is rebuilt from the recording
    assert decode(store.get_init(), store.get_standard_segment(0) or b"")[0] == pytest.approx(
        2 * SEG
    )
