"""LL-HLS playlist writer: parsed back with the m3u8 package, RFC 8216bis rules checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import m3u8
import pytest

from townhall.packaging.playlist import (
    LivePlaylist,
    Part,
    Readiness,
    Segment,
    part_uri,
    render_vod,
    segment_uri,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
PART = 0.512


def make_playlist(window: int = 4) -> LivePlaylist:
    return LivePlaylist(
        part_target=PART,
        parts_per_segment=4,
        nominal_segment_duration=2.048,
        window_segments=window,
    )


def feed(pl: LivePlaylist, n_parts: int, start: int = 0) -> None:
    for k in range(start, start + n_parts):
        msn, idx = divmod(k, 4)
        pl.add_part(
            Part(msn, idx, PART, True, part_uri(msn, idx)), T0 + timedelta(seconds=2.048 * msn)
        )
        if idx == 3:
            pl.complete_segment(msn)


def test_empty_programme_playlist_is_valid_and_hints_first_part() -> None:
    pl = make_playlist()
    parsed = m3u8.loads(pl.render())
    assert parsed.preload_hint.uri == "part0.0.m4s"
    assert parsed.media_sequence == 0
    assert parsed.segments == []
    assert pl.check_request("0", "0").readiness is Readiness.WAIT


def test_ll_hls_rules_hold_as_window_slides() -> None:
    pl = make_playlist(window=4)
    seen_sequences = []
    for step in range(40):
        feed(pl, 1, start=step)
        text = pl.render()
        parsed = m3u8.loads(text)
        part_target = parsed.part_inf.part_target
        assert part_target == pytest.approx(PART)
        assert parsed.server_control.can_block_reload == "YES"
        assert parsed.server_control.part_hold_back >= 3 * part_target
        assert '#EXT-X-MAP:URI="init.mp4"' in text
        complete = [s for s in parsed.segments if s.uri]
        assert len(complete) <= 4
        for seg in complete:
            assert seg.program_date_time is not None
            assert round(seg.duration) <= parsed.target_duration
        for seg in parsed.segments:
            for p in seg.parts:
                assert p.duration <= part_target + 1e-9
                assert p.independent == "YES"
        # preload hint names exactly the part after the last listed one
        msn, idx = divmod(step + 1, 4)
        assert parsed.preload_hint.hint_type == "PART"
        assert parsed.preload_hint.uri == part_uri(msn, idx)
        assert text.count("#EXT-X-PRELOAD-HINT") == 1
        if complete:
            assert parsed.media_sequence == int(complete[0].uri[3:-4])
            assert [s.uri for s in complete] == [
                segment_uri(parsed.media_sequence + i) for i in range(len(complete))
            ]
        seen_sequences.append(parsed.media_sequence)
    assert seen_sequences == sorted(seen_sequences)
    assert seen_sequences[-1] == 10 - 4 + 0  # 10 complete segments, window of 4
    # PDTs are those given for each segment
    parsed = m3u8.loads(pl.render())
    first = [s for s in parsed.segments if s.uri][0]
    assert first.program_date_time == T0 + timedelta(seconds=2.048 * parsed.media_sequence)


def test_parts_dropped_for_old_segments() -> None:
    pl = make_playlist(window=6)
    feed(pl, 6 * 4 + 1)
    parsed = m3u8.loads(pl.render())
    complete = [s for s in parsed.segments if s.uri]
    assert len(complete) == 6
    # three target durations (6 s) from the live edge: the oldest segments carry no parts
    assert complete[0].parts == [] and complete[1].parts == []
    assert len(complete[-1].parts) == 4


def test_ended_playlist_has_endlist_and_no_hint() -> None:
    pl = make_playlist()
    feed(pl, 8)
    text = pl.render(ended=True)
    parsed = m3u8.loads(text)
    assert parsed.is_endlist
    assert "#EXT-X-PRELOAD-HINT" not in text


def test_blocking_request_validation() -> None:
    pl = make_playlist()
    feed(pl, 6)  # seg0 complete, parts 1.0 and 1.1 exist
    c = pl.check_request
    assert c(None, None).readiness is Readiness.READY
    assert c(None, "1").readiness is Readiness.BAD_REQUEST  # _HLS_part without _HLS_msn
    assert c("-1", None).readiness is Readiness.BAD_REQUEST
    assert c("1", "-2").readiness is Readiness.BAD_REQUEST
    assert c("abc", None).readiness is Readiness.BAD_REQUEST
    assert c("1", "x").readiness is Readiness.BAD_REQUEST
    assert c("99999999999999999999999", None).readiness is Readiness.BAD_REQUEST
    assert c("4", None).readiness is Readiness.BAD_REQUEST  # > last (1) + 2
    assert c("3", None).readiness is Readiness.WAIT
    assert c("0", None).readiness is Readiness.READY
    assert c("1", None).readiness is Readiness.WAIT  # segment 1 not complete yet
    assert c("1", "1").readiness is Readiness.READY
    assert c("1", "2").readiness is Readiness.WAIT
    assert c("0", "3").readiness is Readiness.READY
    # part index past the last part of a segment means part 0 of the next one
    r = c("1", "4")
    assert (r.readiness, r.msn, r.part) == (Readiness.WAIT, 2, 0)
    # advance part limit: 3 / 0.512 = 5.86 parts beyond the last one (1.1)
    assert c("2", "2").readiness is Readiness.WAIT  # 5 parts ahead
    assert c("3", "0").readiness is Readiness.BAD_REQUEST  # 7 parts ahead


def test_advance_part_limit_boundary() -> None:
    pl = make_playlist()
    feed(pl, 6)  # last part is 1.1 (absolute 5)
    assert pl.advance_part_limit == pytest.approx(3 / PART)
    assert pl.check_request("2", "2").readiness is Readiness.WAIT  # abs 10: +5
    assert pl.check_request("2", "3").readiness is Readiness.BAD_REQUEST  # abs 11: +6


def test_has_part_and_next_position() -> None:
    pl = make_playlist()
    assert pl.next_part_position() == (0, 0)
    feed(pl, 3)
    assert pl.has_part(0, 2) and not pl.has_part(0, 3)
    assert pl.next_part_position() == (0, 3)
    feed(pl, 1, start=3)
    assert pl.next_part_position() == (1, 0)
    assert pl.has_segment(0) and not pl.has_segment(1)
    assert not pl.has_part(0, 4)  # == (1, 0), not yet produced
    assert pl.blocking_timeout == pytest.approx(3 * pl.target_duration)


def test_parts_are_immutable_and_ordered() -> None:
    pl = make_playlist()
    feed(pl, 2)
    with pytest.raises(ValueError):
        pl.add_part(Part(0, 1, PART, True, part_uri(0, 1)), T0)  # already there
    with pytest.raises(ValueError):
        pl.add_part(Part(0, 3, PART, True, part_uri(0, 3)), T0)  # gap
    with pytest.raises(ValueError):
        pl.add_part(Part(0, 2, PART * 2, True, part_uri(0, 2)), T0)  # longer than PART-TARGET
    with pytest.raises(ValueError):
        pl.complete_segment(1)


def test_vod_playlist() -> None:
    segs = [
        Segment(i, 2.048, T0 + timedelta(seconds=2.048 * i), segment_uri(i)) for i in range(5)
    ] + [Segment(5, 0.9, T0 + timedelta(seconds=10.24), segment_uri(5))]
    text = render_vod(segs, nominal_duration=2.048)
    parsed = m3u8.loads(text)
    assert parsed.is_endlist
    assert parsed.playlist_type == "vod"
    assert parsed.target_duration == 2
    assert [s.uri for s in parsed.segments] == [segment_uri(i) for i in range(6)]
    assert all(s.program_date_time is not None for s in parsed.segments)
    assert "#EXT-X-PART" not in text and "PRELOAD-HINT" not in text
