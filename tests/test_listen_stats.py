"""Pure cores of ``townhall listen``: percentiles, the simulated player, playlist parsing and
the fetch schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import m3u8
import numpy as np
import pytest

from townhall.listen.playlist import PlaylistError, parse_media_playlist, variants
from townhall.listen.schedule import live_edge, plan, start_position, vod_plan
from townhall.listen.stats import PlayoutClock, arrival_latency, percentile, summarize
from townhall.packaging import LivePlaylist, Part, part_uri, render_vod
from townhall.packaging import Segment as PkgSegment

PART = 0.512


# -- percentiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0, 5, 50, 95, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = list(np.random.default_rng(7).exponential(0.3, 101)) + [5.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges() -> None:
    assert percentile([], 50) is None
    assert percentile([2.0], 95) == 2.0
    assert percentile([1.0, 3.0], 50) == 2.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    empty = summarize([])
    assert (empty.count, empty.p50, empty.p95, empty.max) == (0, None, None, None)
    s = summarize([0.1, 0.2, 0.3, 0.4, 1.0])
    assert (s.count, s.p50, s.max) == (5, 0.3, 1.0)
    assert s.p95 == pytest.approx(0.88)


def test_arrival_latency_is_age_of_newest_sample() -> None:
    # part captured from 100.0 to 100.512, last byte at 100.7: newest sample is 0.188 s old
    assert arrival_latency(100.7, 100.0, PART) == pytest.approx(0.188)


# -- simulated player ----------------------------------------------------------------------------


def live_schedule(
    n: int, delay: float = 0.1, late: dict[int, float] | None = None
) -> list[tuple[float, float]]:
    """(arrival, capture start) of n parts joined 3 behind the edge (0..2 arrive at once),
    fetched in order: a late part delays the ones after it."""
    late = late or {}
    arrival = 2 * PART + PART + delay  # part 2 just became available
    out = []
    for k in range(n):
        capture = k * PART
        arrival = max(arrival, capture + PART + delay + late.get(k, 0.0))
        out.append((arrival, capture))
    return out


def run(clock: PlayoutClock, schedule: list[tuple[float, float]]) -> list[float]:
    latencies: list[float] = []
    for arrival, capture in schedule:
        for played in clock.add(arrival, PART, capture):
            assert played.latency is not None
            latencies.append(played.latency)
    return latencies


def test_steady_arrivals_never_stall_and_latency_is_constant() -> None:
    clock = PlayoutClock(start_buffer=3 * PART, resume_buffer=PART)
    latencies = run(clock, live_schedule(40))
    assert clock.stalls == 0 and clock.stall_seconds == 0.0
    assert clock.started_at == pytest.approx(3 * PART + 0.1)
    # part 0 (captured at 0) plays when playback starts: hold-back + part + network delay
    assert latencies == pytest.approx([3 * PART + 0.1] * 40)
    assert clock.buffered(live_schedule(40)[-1][0]) == pytest.approx(3 * PART)


def test_nothing_plays_before_the_start_buffer_is_full() -> None:
    clock = PlayoutClock(start_buffer=3 * PART, resume_buffer=PART)
    assert clock.add(1.0, PART, 0.0) == [] and clock.add(1.0, PART, PART) == []
    assert not clock.playing and clock.started_at is None
    played = clock.add(1.2, PART, 2 * PART)
    assert [p.play_at for p in played] == pytest.approx([1.2, 1.2 + PART, 1.2 + 2 * PART])


def test_late_part_is_one_stall_of_the_right_length() -> None:
    clock = PlayoutClock(start_buffer=3 * PART, resume_buffer=PART)
    # Steady state: a part arrives with 1.024 s still buffered (it plays 1.536 s after the
    # part before it arrived). Part 10 arrives 2 s late: the buffer is dry 0.976 s before it.
    latencies = run(clock, live_schedule(20, late={10: 2.0}))
    assert clock.stalls == 1
    assert clock.stall_seconds == pytest.approx(2.0 - 2 * PART)
    # after the stall the player is 0.976 s further behind, for good
    assert latencies[0] == pytest.approx(latencies[9])
    assert latencies[10:] == pytest.approx([latencies[0] + 2.0 - 2 * PART] * 10)


def test_slightly_late_part_within_the_buffer_is_no_stall() -> None:
    clock = PlayoutClock(start_buffer=3 * PART, resume_buffer=PART)
    run(clock, live_schedule(20, late={10: 0.9}))  # < the 1.024 s left in the buffer
    assert clock.stalls == 0


def test_listener_stopping_during_an_underrun_counts_the_stall_until_then() -> None:
    clock = PlayoutClock(start_buffer=3 * PART, resume_buffer=PART)
    schedule = live_schedule(10)
    run(clock, schedule)
    dry_at = clock.started_at + 10 * PART  # type: ignore[operator]
    clock.finish(dry_at + 1.5, ended=False)
    assert clock.stalls == 1 and clock.stall_seconds == pytest.approx(1.5)
    ended = PlayoutClock(start_buffer=3 * PART, resume_buffer=PART)
    run(ended, schedule)
    ended.finish(dry_at + 1.5, ended=True)  # the stream ended: running dry is the end
    assert ended.stalls == 0 and ended.stall_seconds == 0.0


def test_short_stream_that_ends_before_the_start_buffer_still_plays() -> None:
    clock = PlayoutClock(start_buffer=3 * PART, resume_buffer=PART)
    clock.add(5.0, PART, 4.0)
    played = clock.finish(5.5, ended=True)
    assert [p.latency for p in played] == pytest.approx([1.5])


# -- playlist parsing ----------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def live_playlist(parts: int, ended: bool = False, window: int = 6) -> str:
    pl = LivePlaylist(
        part_target=PART, parts_per_segment=4, nominal_segment_duration=4 * PART,
        window_segments=window,
    )  # fmt: skip
    for k in range(parts):
        msn, idx = divmod(k, 4)
        pl.add_part(
            Part(msn, idx, PART, True, part_uri(msn, idx)), T0 + timedelta(seconds=msn * 4 * PART)
        )
        if idx == 3:
            pl.complete_segment(msn)
    return pl.render(ended=ended)


def test_parses_the_packager_live_playlist_like_m3u8_does() -> None:
    text = live_playlist(4 * 7 + 2)  # 7 segments (6 in the window) and 2 parts
    pl = parse_media_playlist(text)
    ref = m3u8.loads(text)
    assert pl.media_sequence == ref.media_sequence == 1
    # m3u8 lists the open segment as a segment without URI
    assert [s.uri for s in pl.segments] + [None] == [s.uri for s in ref.segments]
    assert [p.uri for p in pl.parts()] == [p.uri for s in ref.segments for p in s.parts]
    assert [p.uri for p in pl.parts()][-2:] == ["part7.0.m4s", "part7.1.m4s"]
    assert [p.duration for p in pl.parts()] == [p.duration for s in ref.segments for p in s.parts]
    assert pl.part_target == PART and pl.can_block_reload
    assert pl.part_hold_back == pytest.approx(3 * PART) and pl.hold_back_seconds() == 3 * PART
    assert pl.map_uri == "init.mp4" and pl.preload_hint == "part7.2.m4s" and not pl.ended
    assert pl.open_segment is not None and pl.open_segment.msn == 7
    seg = pl.segments[0]
    assert seg.pdt == pytest.approx((T0 + timedelta(seconds=4 * PART)).timestamp())
    assert seg.parts == ()  # beyond three target durations: parts no longer listed
    assert pl.segments[-1].parts[2].offset == pytest.approx(2 * PART)
    assert pl.open_segment.pdt == pytest.approx((T0 + timedelta(seconds=28 * PART)).timestamp())


def test_parses_a_vod_playlist() -> None:
    segs = [
        PkgSegment(m, 4 * PART, T0 + timedelta(seconds=m * 4 * PART), f"seg{m}.m4s")
        for m in range(3)
    ]
    pl = parse_media_playlist(render_vod(segs, nominal_duration=4 * PART))
    assert pl.is_vod and pl.ended and pl.playlist_type == "VOD" and pl.part_target is None
    units = vod_plan(pl).units
    assert [u.uri for u in units] == ["seg0.m4s", "seg1.m4s", "seg2.m4s"]
    assert all(u.part is None for u in units)


def test_rejects_what_it_cannot_follow() -> None:
    with pytest.raises(PlaylistError):
        parse_media_playlist("<html>nope</html>")
    with pytest.raises(PlaylistError):
        parse_media_playlist("#EXTM3U\n#EXTINF:2,\nseg0.m4s\n")  # no target duration
    master = '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.2"\naudio/live.m3u8\n'
    assert variants(master) == ["audio/live.m3u8"]
    with pytest.raises(PlaylistError):
        parse_media_playlist(master)


# -- schedule ------------------------------------------------------------------------------------


def test_joins_part_hold_back_behind_the_last_part() -> None:
    pl = parse_media_playlist(live_playlist(4 * 3 + 1))  # last part is 3.0
    assert start_position(pl) == (2, 2)  # 2.2, 2.3, 3.0 = 1.536 s
    assert live_edge(pl) == (3, 1)
    step = plan(pl, start_position(pl))
    assert [(u.msn, u.part) for u in step.units] == [(2, 2), (2, 3), (3, 0)]
    assert step.next_position == (3, 1) and step.skipped == 0
    first = step.units[0]
    assert first.capture_start == pytest.approx(T0.timestamp() + 10 * PART)


def test_join_before_any_audio_waits_for_the_first_part() -> None:
    pl = parse_media_playlist(live_playlist(0))
    assert start_position(pl) == (0, 0) and plan(pl, (0, 0)).units == ()


def test_next_part_after_a_completed_segment_is_part_zero_of_the_next() -> None:
    pl = parse_media_playlist(live_playlist(4 * 3))  # segment 2 just completed
    step = plan(pl, (2, 3))
    assert [(u.msn, u.part) for u in step.units] == [(2, 3)]
    assert step.next_position == (3, 0)


def test_falling_behind_the_window_skips_and_uses_whole_segments() -> None:
    pl = parse_media_playlist(live_playlist(4 * 10 + 1))  # window: segments 4..9
    step = plan(pl, (2, 1))
    assert step.skipped == 2  # segments 2 and 3 are gone
    kinds = [(u.msn, u.part) for u in step.units]
    # old segments are no longer listed with parts: fetched whole
    assert kinds[0] == (4, None) and kinds[-1] == (10, 0)
    assert step.next_position == (10, 1)
