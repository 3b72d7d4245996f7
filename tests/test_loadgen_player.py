"""The pure playout model: parts against a playout clock, stall counting like a real player."""

from __future__ import annotations

import pytest

from townhall.loadgen.player import (
    Playout,
    absolute_part,
    part_position,
    start_position,
)

PART = 0.5


def test_positions_cross_segment_boundaries() -> None:
    assert absolute_part(3, 3, 4) == 15
    assert part_position(15, 4) == (3, 3)
    assert part_position(16, 4) == (4, 0)  # msn increments after the last part
    assert start_position(last_listed=15, first_listed=0) == 13  # 3 parts incl. the newest
    assert start_position(last_listed=1, first_listed=0) == 0  # never before the oldest


def test_parts_on_time_never_stall() -> None:
    p = Playout(PART, warmup=2.0)
    # start 3 parts behind live: three parts at once, then one per part duration
    for i, t in enumerate([0.0, 0.01, 0.02]):
        assert p.received(10 + i, t) is None
    for k in range(100):
        assert p.received(13 + k, 0.5 + k * PART) is None
    assert p.stalls == 0 and p.warmup_stalls == 0 and p.parts == 103
    assert p.buffer_at(0.5 + 99 * PART) == pytest.approx(1.5)  # 3 parts behind live
    assert not p.stalled_now(0.5 + 99 * PART)


def test_a_late_part_is_one_stall_of_the_right_length() -> None:
    p = Playout(PART, warmup=2.0)
    p.received(0, 0.0)  # plays 0.0–0.5
    p.received(1, 0.1)  # 0.5–1.0
    p.received(2, 0.2)  # 1.0–1.5
    assert p.dry_at() == pytest.approx(1.5)
    stall = p.received(3, 10.0)  # ran dry at 1.5, frozen until 10.0
    assert stall is not None and stall.at == pytest.approx(1.5)
    assert stall.duration == pytest.approx(8.5) and stall.during_warmup is True
    assert p.warmup_stalls == 1 and p.stalls == 0
    # playback resumed at 10.0 with one part: dry at 10.5
    assert p.received(4, 10.4) is None
    stall = p.received(5, 12.0)  # dry at 11.0, after the warm-up: a real stall
    assert stall is not None and not stall.during_warmup
    assert p.stalls == 1 and p.stalled_seconds == pytest.approx(8.5 + 1.0)


def test_finish_counts_a_stall_in_progress() -> None:
    p = Playout(PART, warmup=0.0)
    p.received(0, 0.0)
    assert p.finish(0.4) is None
    assert p.stalled_now(0.6)
    stall = p.finish(0.8)
    assert stall is not None and p.stalls == 1


def test_gaps_are_skipped_media_and_order_is_enforced() -> None:
    p = Playout(PART)
    p.received(0, 0.0)
    p.received(3, 0.1)
    assert p.skipped == 2
    with pytest.raises(ValueError):
        p.received(2, 0.2)
    p.restart()
    assert p.received(50, 5.0) is None and p.dry_at() == pytest.approx(5.5)
    with pytest.raises(ValueError):
        Playout(0.0)
